"""Framework overhead of oobleck and DSPy, measured side by side in one run.

    PYTHONPATH=. python benchmarks/overhead.py [--rounds 5] [--calls 500] [--warmup 100] [--repeats 7]

Needs the DSPy venv (bash benchmarks/setup_dspy.sh). Three numbers per framework:

per call    one ``Predict("question -> answer")`` call with a scripted LM and no cache:
            oobleck.FakeLM in this process; DSPy's DummyLM via dspy_side/overhead.py
            (--repeats 0) in the venv. --rounds rounds alternate the two frameworks (oobleck
            first in even rounds, DSPy first in odd ones); each round times --calls calls after
            --warmup untimed calls. Reported: per-round mean/median µs and their spread.
import      (a) whole subprocess ``python -c "import X"`` wall time minus a bare
            ``python -c pass`` of the same interpreter, and (b) in-process: the
            ``time.perf_counter()`` difference around ``import X`` inside a fresh interpreter.
cold start  whole subprocess wall time of: start the interpreter, import, build the scripted
            LM, make the first prediction, exit; minus the bare interpreter.

Start-up timings run --repeats rounds; in each round every measurement is taken for both
frameworks back to back, alternating which goes first. Best (min) is the headline number,
the median shows the noise. Both interpreters are the same CPython; both read warm .pyc files
from one PYTHONPYCACHEPREFIX (see _common.py), warmed by an untimed run first.

Prints one JSON object and writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import DSPY_SIDE, env_for, machine, python_for, require_dspy_venv, run_dspy_side, spread, write_result

ANSWER = "Paris"

GOALS = {
    "per_call_ratio_max": 0.1,  # oobleck per-call overhead <= 1/10 of DSPy's
    "import_over_bare_max_s": 0.15,  # import oobleck < 0.15 s over a bare interpreter
    "cold_start_ratio_max": 0.25,  # oobleck cold start <= 1/4 of DSPy's
}


def _dspy_snippets() -> tuple[str, str]:
    """DSPy's cold-start program and in-process import timer, from dspy_side/overhead.py
    (that module imports dspy only inside main(), so loading it here is safe)."""
    spec = importlib.util.spec_from_file_location("dspy_side_overhead", DSPY_SIDE / "overhead.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.COLD, mod.IMPORT


DSPY_COLD, DSPY_IMPORT = _dspy_snippets()

OOBLECK_COLD = (
    "import oobleck\n"
    f"lm = oobleck.FakeLM(['[[ ## answer ## ]]\\n{ANSWER}'], cycle=True)\n"
    "r = oobleck.Predict('question -> answer', lm=lm)(question='What is the capital of France?')\n"
    f"assert r.answer == {ANSWER!r}, r\n"
)
OOBLECK_IMPORT = "import time;t=time.perf_counter();import oobleck;print(time.perf_counter()-t)"
MODULE_COUNT = "import sys;n=len(sys.modules);import {mod};print(len(sys.modules)-n)"

PROGRAMS = {
    "oobleck": {"bare": "pass", "import": "import oobleck", "cold": OOBLECK_COLD, "inproc": OOBLECK_IMPORT},
    "dspy": {"bare": "pass", "import": "import dspy", "cold": DSPY_COLD, "inproc": DSPY_IMPORT},
}


def run_code(framework: str, code: str) -> tuple[float, str]:
    """Wall time of a fresh interpreter running ``code``, and what it printed."""
    cmd = [python_for(framework), "-c", code]
    env = env_for(framework)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{framework}: {code!r} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout.strip()


def oobleck_per_call(calls: int, warmup: int) -> tuple[list[float], str]:
    """Per-call seconds of oobleck.Predict with FakeLM (in this process)."""
    import oobleck

    lm = oobleck.FakeLM([f"[[ ## answer ## ]]\n{ANSWER}"], cycle=True)
    predict = oobleck.Predict("question -> answer", lm=lm)

    def call(i: int) -> None:
        r = predict(question=f"What is the capital of France? ({i})")
        if r.answer != ANSWER:
            raise SystemExit(f"FakeLM output did not parse: {r!r}")

    for i in range(warmup):
        call(i)
    lm.requests.clear()
    times = []
    for i in range(calls):
        if i % 200 == 0:  # FakeLM keeps every request; keep memory flat (outside the timing)
            lm.requests.clear()
        t = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t)
    lm.requests.clear()
    return times, oobleck.__version__


def per_call(rounds: int, calls: int, warmup: int) -> dict[str, Any]:
    per_round: dict[str, list[dict[str, float]]] = {"oobleck": [], "dspy": []}
    versions = {}
    for r in range(rounds):
        order = ("oobleck", "dspy") if r % 2 == 0 else ("dspy", "oobleck")
        for fw in order:
            if fw == "oobleck":
                times, versions["oobleck"] = oobleck_per_call(calls, warmup)
                per_round["oobleck"].append(
                    {"mean": statistics.fmean(times) * 1e6, "median": statistics.median(times) * 1e6}
                )
            else:
                out = run_dspy_side("overhead.py", "--calls", str(calls), "--warmup", str(warmup), "--repeats", "0")
                versions["dspy"] = out["version"]
                per_round["dspy"].append({"mean": out["per_call_us_mean"], "median": out["per_call_us_median"]})
        print(
            f"per-call round {r + 1}/{rounds}: oobleck {per_round['oobleck'][-1]['median']:.1f} µs, "
            f"dspy {per_round['dspy'][-1]['median']:.1f} µs (medians)",
            file=sys.stderr,
        )
    out: dict[str, Any] = {"rounds": rounds, "calls_per_round": calls, "warmup_per_round": warmup}
    for fw, rows in per_round.items():
        out[fw] = {
            "version": versions[fw],
            "mean_us": spread([x["mean"] for x in rows], 1),
            "median_us": spread([x["median"] for x in rows], 1),
        }
    paired = [o["median"] / d["median"] for o, d in zip(per_round["oobleck"], per_round["dspy"])]
    out["ratio_oobleck_over_dspy"] = {
        "of_median_of_round_medians": round(
            out["oobleck"]["median_us"]["median"] / out["dspy"]["median_us"]["median"], 4
        ),
        "of_median_of_round_means": round(out["oobleck"]["mean_us"]["median"] / out["dspy"]["mean_us"]["median"], 4),
        "paired_per_round": spread(paired, 4),
    }
    return out


def startup(repeats: int) -> dict[str, Any]:
    # Untimed warm-up: fills the shared .pyc prefix and the OS file cache for both sides.
    for fw, progs in PROGRAMS.items():
        for code in progs.values():
            run_code(fw, code)
    samples: dict[str, dict[str, list[float]]] = {
        fw: {"bare": [], "import": [], "cold": [], "inproc": []} for fw in PROGRAMS
    }
    for r in range(repeats):
        for kind in ("bare", "import", "cold", "inproc"):
            order = ("oobleck", "dspy") if (r + len(kind)) % 2 == 0 else ("dspy", "oobleck")
            for fw in order:
                wall, printed = run_code(fw, PROGRAMS[fw][kind])
                samples[fw][kind].append(float(printed) if kind == "inproc" else wall)
        print(
            f"start-up round {r + 1}/{repeats}: "
            + ", ".join(
                f"{fw} import {samples[fw]['import'][-1]:.3f}s cold {samples[fw]['cold'][-1]:.3f}s" for fw in PROGRAMS
            ),
            file=sys.stderr,
        )
    out: dict[str, Any] = {"repeats": repeats}
    for fw, s in samples.items():
        bare = min(s["bare"])
        _, modules = run_code(fw, MODULE_COUNT.format(mod=fw))
        out[fw] = {
            "bare_interpreter_s": spread(s["bare"]),
            "import_wall_s": spread(s["import"]),
            "cold_start_wall_s": spread(s["cold"]),
            "import_inprocess_s": spread(s["inproc"]),
            # Headline numbers: best of N minus the best bare interpreter (same python binary).
            "import_over_bare_s": round(min(s["import"]) - bare, 4),
            "cold_start_over_bare_s": round(min(s["cold"]) - bare, 4),
            "import_inprocess_best_s": round(min(s["inproc"]), 4),
            "modules_imported": int(modules),
        }
    o, d = out["oobleck"], out["dspy"]
    out["ratio_oobleck_over_dspy"] = {
        "import_over_bare": round(o["import_over_bare_s"] / d["import_over_bare_s"], 4),
        "import_inprocess": round(o["import_inprocess_best_s"] / d["import_inprocess_best_s"], 4),
        "cold_start_over_bare": round(o["cold_start_over_bare_s"] / d["cold_start_over_bare_s"], 4),
        "cold_start_wall": round(min(samples["oobleck"]["cold"]) / min(samples["dspy"]["cold"]), 4),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="per-call rounds per framework")
    ap.add_argument("--calls", type=int, default=500, help="timed calls per round")
    ap.add_argument("--warmup", type=int, default=100, help="untimed calls before each round")
    ap.add_argument("--repeats", type=int, default=7, help="start-up measurement rounds")
    a = ap.parse_args()
    require_dspy_venv()

    t0 = time.perf_counter()
    calls = per_call(a.rounds, a.calls, a.warmup)
    start = startup(a.repeats)
    ratio_call = calls["ratio_oobleck_over_dspy"]["of_median_of_round_medians"]
    ratio_cold = start["ratio_oobleck_over_dspy"]["cold_start_over_bare"]
    imp = start["oobleck"]["import_over_bare_s"]
    imp_in = start["oobleck"]["import_inprocess_best_s"]
    result = {
        "benchmark": "overhead",
        "per_call": calls,
        "startup": start,
        "goals": {
            "per_call_ratio": {
                "goal": f"<= {GOALS['per_call_ratio_max']}",
                "value": ratio_call,
                "met": ratio_call <= GOALS["per_call_ratio_max"],
            },
            "import_over_bare_s": {
                "goal": f"< {GOALS['import_over_bare_max_s']}",
                "value": imp,
                "inprocess_value": imp_in,
                "met": max(imp, imp_in) < GOALS["import_over_bare_max_s"],
            },
            "cold_start_ratio": {
                "goal": f"<= {GOALS['cold_start_ratio_max']}",
                "value": ratio_cold,
                "met": ratio_cold <= GOALS["cold_start_ratio_max"],
            },
        },
        "args": vars(a),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }
    write_result("overhead", result)


if __name__ == "__main__":
    main()
