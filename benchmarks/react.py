"""Agents that act: oobleck's ReAct vs DSPy's ReAct on SmolLM2-135M, HotPotQA and GSM8K.

    PYTHONPATH=. python benchmarks/react.py [--dev 20] [--train 10] [--max-iters 4] [--threads 4]
        [--sets hotpotqa,gsm8k] [--frameworks oobleck,dspy] [--auto-budget 150]
        [--dspy-timeout 900] [--out react]

One process run. One ``oobleck.LocalLM`` (SmolLM2-135M-Instruct, temperature 0) answers
oobleck in-process and serves the OpenAI-compatible HTTP API (``LocalLM.serve()``'s server)
that DSPy 3.x (its own venv, ``dspy_side/react.py``, one subprocess per row) calls, in the same
run. Tools (benchmarks/react_tools.py): HotPotQA dev with ``search`` (BM25 over the pooled
8,842-paragraph corpus, two paragraphs cut to 300 characters), GSM8K dev with ``calculate``
(safe arithmetic through ``ast``); DSPy calls the same functions through an HTTP endpoint of
this process. Both programs: ``ReAct("question -> answer", tools=[tool], max_iters=N)``.

Rows on the same first --dev dev rows of each set (compiling on the first --train train rows):

- DSPy zero-shot; DSPy ``BootstrapFewShot`` (max_bootstrapped_demos=2, max_labeled_demos=0);
  DSPy ``MIPROv2(auto="light")`` (the same demo settings); DSPy's default adapter (ChatAdapter
  with its JSONAdapter fallback), max_tokens 256.
- oobleck zero-shot; ``BootstrapFewShot`` (the same settings); ``Auto`` (the optimizer a user
  would pick, budget --auto-budget LM calls). oobleck's ReAct on LocalLM constrains each action
  with a grammar (``tool_first=True``: the first step must search or calculate).

Metric to compile (both sides): HotPotQA answer token-F1 >= 0.5, GSM8K the answer's last number
equals the gold one (Auto also scores with these). Per cell: EM and F1 (HotPotQA) or accuracy
(GSM8K), with 95% Wilson intervals (EM/accuracy) or a normal interval (F1); the share of steps
whose action failed to parse; steps per question; LM calls of the evaluation; seconds per row;
compile LM calls and time. Paired comparisons on the same rows: exact two-sided sign test
(McNemar) on EM/accuracy. No cache anywhere. A DSPy row that crashes or passes --dspy-timeout is
recorded with its error.

Prints one JSON object and writes benchmarks/results/react.json (or --out).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import statistics
import sys
import threading
import time
from typing import Any

import react_tools
from _common import (
    DATA,
    RESULTS,
    free_port,
    machine,
    read_jsonl,
    require_dspy_venv,
    run_dspy_side,
    wilson,
    write_result,
)

import oobleck
from oobleck.evaluation import evaluate
from oobleck.optimize import Auto, BootstrapFewShot

#: When the run started (perf_counter), for --time-limit.
T0 = time.perf_counter()


def out_of_time(a: argparse.Namespace) -> str | None:
    """Why a row is not run (the run's --time-limit passed), or None."""
    if a.time_limit and time.perf_counter() - T0 > a.time_limit:
        return f"not run: the run's time limit of {a.time_limit:.0f} s had passed"
    return None


GOALS = (
    "0 unparseable actions on oobleck's side; a compiled oobleck row significantly above oobleck "
    "zero-shot on at least one set (paired sign test, p < 0.05); oobleck's best above DSPy's best on "
    "both sets at no more LM calls"
)


def load(name: str, n_train: int, n_dev: int) -> tuple[list[oobleck.Example], list[oobleck.Example]]:
    def ex(r: dict[str, Any]) -> oobleck.Example:
        return oobleck.Example(question=r["question"], answer=str(r["answer"])).with_inputs("question")

    train = [ex(r) for r in read_jsonl(DATA / name / "train.jsonl")[:n_train]]
    dev = [ex(r) for r in read_jsonl(DATA / name / "dev.jsonl")[:n_dev]]
    return train, dev


def scores_of(kind: str, gold: Any, answer: Any) -> dict[str, float]:
    if answer is None:
        return {"em": 0.0, "f1": 0.0}
    if kind == "gsm8k":
        ok = float(react_tools.gsm8k_correct(gold, answer))
        return {"em": ok, "f1": ok}
    return {"em": float(react_tools.exact(gold, answer)), "f1": react_tools.token_f1(gold, answer)}


def compile_metric(kind: str) -> Any:
    def metric(ex: oobleck.Example, pred: Any, trace: Any = None) -> float:
        s = scores_of(kind, ex.answer, getattr(pred, "answer", None))
        return float(s["f1"] >= 0.5) if kind == "hotpotqa" else s["em"]

    metric.__name__ = f"{kind}_metric"
    return metric


def cell(rows: list[dict[str, Any]], *, calls: int, unparsed: int, steps: int, seconds: float) -> dict[str, Any]:
    """The numbers of one table cell from per-row results."""
    n = len(rows)
    em = [r["em"] for r in rows]
    f1 = [r["f1"] for r in rows]
    mean_f1 = statistics.fmean(f1) if f1 else 0.0
    sd = statistics.pstdev(f1) if len(f1) > 1 else 0.0
    half = 1.96 * sd / math.sqrt(n) if n else 0.0
    return {
        "n": n,
        "em": round(100 * statistics.fmean(em), 1) if em else 0.0,
        "em_ci95": wilson(int(sum(em)), n),
        "f1": round(100 * mean_f1, 1),
        "f1_ci95": [round(100 * max(0.0, mean_f1 - half), 1), round(100 * min(1.0, mean_f1 + half), 1)],
        "steps": steps,
        "steps_per_question": round(steps / n, 2) if n else 0.0,
        "unparsed_steps": unparsed,
        "unparsed_share": round(unparsed / steps, 4) if steps else 0.0,
        "eval_calls": calls,
        "seconds_per_row": round(seconds, 2),
        "row_em": em,
        "row_f1": [round(x, 4) for x in f1],
    }


def run_oobleck(
    lm: oobleck.LocalLM, kind: str, train: list[Any], dev: list[Any], a: argparse.Namespace
) -> dict[str, Any]:
    tool = react_tools.search if kind == "hotpotqa" else react_tools.calculate
    start = oobleck.ReAct("question -> answer", tools=[tool], max_iters=a.max_iters, tool_first=True, lm=lm)
    metric = compile_metric(kind)
    out: dict[str, Any] = {}
    for method in a.methods.split(","):
        m: dict[str, Any] = {}
        t0 = time.perf_counter()
        skipped = out_of_time(a)
        if skipped:
            out[method] = {"error": skipped}
            continue
        try:
            if method == "zero_shot":
                program: Any = start
                m["compile"] = {"calls": 0, "wall_s": 0.0}
            else:
                if method == "bootstrap":
                    opt: Any = BootstrapFewShot(metric, max_bootstrapped_demos=a.demos, max_labeled_demos=0)
                    program = opt.compile(start, trainset=train, seed=a.seed, progress=False)
                elif method == "auto":
                    opt = Auto(metric, budget=a.auto_budget, num_threads=a.threads)
                    program = opt.compile(start, trainset=train, seed=a.seed, progress=False)
                    verdict = (program.provenance.get("scores") or {}).get("verdict") or {}
                    m["auto_verdict"] = verdict.get("reason")
                else:
                    raise SystemExit(f"unknown oobleck method {method}")
                m["compile"] = {"calls": program.compile_usage.calls, "wall_s": round(time.perf_counter() - t0, 1)}
            m["demos"] = {name: len(p.demos) for name, p in program.named_predictors()}
            t0 = time.perf_counter()
            res = evaluate(program, dev, metric, num_threads=a.threads, progress=False, max_errors=None)
            wall = time.perf_counter() - t0
            rows, steps, unparsed = [], 0, 0
            for ex, row in zip(dev, res.rows, strict=True):
                pred = row.prediction if row.error is None else None
                trajectory = getattr(pred, "trajectory", None) or []
                steps += len(trajectory)
                unparsed += sum(1 for s in trajectory if s.get("tool") is None)
                rows.append(scores_of(kind, ex.answer, getattr(pred, "answer", None)))
            m.update(cell(rows, calls=res.usage.calls, unparsed=unparsed, steps=steps, seconds=wall / max(1, len(dev))))
            m["failed_rows"] = res.errors
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            m["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        out[method] = m
        print(f"  oobleck {kind} {method:10s} {summary(m)}", file=sys.stderr)
    return out


def run_dspy(base_url: str, tools_url: str, kind: str, a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in a.dspy_methods.split(","):
        skipped = out_of_time(a)
        if skipped:
            out[method] = {"error": skipped}
            continue
        left = a.time_limit - (time.perf_counter() - T0) if a.time_limit else a.dspy_timeout
        m: dict[str, Any]
        try:
            raw = run_dspy_side(
                "react.py",
                "--set", kind,
                "--data", str(DATA / kind),
                "--base-url", base_url,
                "--tools-url", tools_url,
                "--dev", str(a.dev),
                "--train", str(a.train),
                "--max-iters", str(a.max_iters),
                "--max-tokens", str(a.dspy_max_tokens),
                "--threads", str(a.threads),
                "--demos", str(a.demos),
                "--method", method,
                "--seed", str(a.seed),
                timeout=max(60.0, min(a.dspy_timeout, left)),
            )  # fmt: skip
        except SystemExit as exc:
            m = {"error": str(exc)[-500:]}
        except Exception as exc:  # noqa: BLE001 - a timeout is a result too
            m = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        else:
            r = raw["result"]
            m = {"compile": r.get("compile"), "demos": r.get("demos"), "version": raw.get("version")}
            if "error" in r:
                m["error"] = r["error"]
            else:
                rows = r["rows"]
                steps = sum(x["steps"] for x in rows)
                m.update(
                    cell(
                        [{"em": x["em"], "f1": x["f1"]} for x in rows],
                        calls=r["eval"]["calls"],
                        unparsed=r["unparsed_steps"],
                        steps=steps,
                        seconds=r["seconds_per_row"],
                    )
                )
                m["context_stops"] = r["context_stops"]
                m["failed_rows"] = sum(1 for x in rows if x.get("error"))
        out[method] = m
        print(f"  dspy    {kind} {method:10s} {summary(m)}", file=sys.stderr)
    return out


def summary(m: dict[str, Any]) -> str:
    if "error" in m:
        return f"ERROR {m['error'][:200]}"
    return (
        f"em {m['em']:5.1f} f1 {m['f1']:5.1f} unparsed {m['unparsed_steps']}/{m['steps']} "
        f"calls {m['eval_calls']} {m['seconds_per_row']}s/row compile {m['compile']['calls']} calls"
    )


def sign_test(a_rows: list[float], b_rows: list[float]) -> dict[str, Any]:
    """Exact two-sided sign test (McNemar) of b over a on the same rows."""
    wins = sum(1 for x, y in zip(a_rows, b_rows, strict=True) if y > x)
    losses = sum(1 for x, y in zip(a_rows, b_rows, strict=True) if y < x)
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(0, min(wins, losses) + 1)) / 2**n if n else 1.0
    return {"wins": wins, "losses": losses, "p": round(min(1.0, 2 * tail), 4)}


def goals(sets: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unparsed = sum(
        m.get("unparsed_steps", 0) for s in sets.values() for m in s.get("oobleck", {}).values() if "error" not in m
    )
    out["oobleck_unparsed_steps"] = unparsed
    out["zero_unparsed_met"] = unparsed == 0
    per_set: dict[str, Any] = {}
    for kind, s in sets.items():
        ours = {k: m for k, m in s.get("oobleck", {}).items() if "error" not in m}
        theirs = {k: m for k, m in s.get("dspy", {}).items() if "error" not in m}
        entry: dict[str, Any] = {}
        zero = ours.get("zero_shot")
        for name in ("bootstrap", "auto"):
            if zero and name in ours:
                entry[f"{name}_vs_zero_shot"] = sign_test(zero["row_em"], ours[name]["row_em"])
        best_ours = max(ours.items(), key=lambda kv: (kv[1]["em"], kv[1]["f1"]), default=None)
        best_theirs = max(theirs.items(), key=lambda kv: (kv[1]["em"], kv[1]["f1"]), default=None)
        if best_ours:
            entry["oobleck_best"] = {"row": best_ours[0], "em": best_ours[1]["em"], "f1": best_ours[1]["f1"]}
        if best_theirs:
            entry["dspy_best"] = {"row": best_theirs[0], "em": best_theirs[1]["em"], "f1": best_theirs[1]["f1"]}
        if best_ours and best_theirs:
            o, d = best_ours[1], best_theirs[1]
            entry["above_dspy_best"] = (o["em"], o["f1"]) > (d["em"], d["f1"])
            o_calls = o["eval_calls"] + o["compile"]["calls"]
            d_calls = d["eval_calls"] + (d["compile"] or {}).get("calls", 0)
            entry["calls"] = {"oobleck_best": o_calls, "dspy_best": d_calls}
            entry["no_more_calls"] = o_calls <= d_calls
            entry["paired_vs_dspy_best"] = sign_test(d["row_em"], o["row_em"])
        entry["compiled_significant"] = any(
            v["p"] < 0.05 and v["wins"] > v["losses"] for k, v in entry.items() if k.endswith("_vs_zero_shot")
        )
        per_set[kind] = entry
    out["per_set"] = per_set
    out["compiled_significant_met"] = any(e["compiled_significant"] for e in per_set.values())
    out["above_dspy_met"] = all(e.get("above_dspy_best") and e.get("no_more_calls") for e in per_set.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev", type=int, default=20, help="first N dev rows of each set")
    ap.add_argument("--train", type=int, default=10, help="first N train rows (compiling)")
    ap.add_argument("--max-iters", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48, help="the answer step's max_tokens (oobleck)")
    ap.add_argument("--dspy-max-tokens", type=int, default=192, help="DSPy's max_tokens (its steps and answer)")
    ap.add_argument("--demos", type=int, default=2, help="max_bootstrapped_demos (both sides)")
    ap.add_argument("--threads", type=int, default=4, help="concurrent rows (and llama.cpp slots)")
    ap.add_argument("--n-threads", type=int, default=0, help="llama.cpp CPU threads (0: LocalLM's default)")
    ap.add_argument("--sets", default="hotpotqa,gsm8k")
    ap.add_argument("--frameworks", default="oobleck,dspy")
    ap.add_argument("--methods", default="zero_shot,bootstrap,auto")
    ap.add_argument("--dspy-methods", default="zero_shot,bootstrap,mipro")
    ap.add_argument("--auto-budget", type=int, default=150, help="Auto's max LM calls")
    ap.add_argument("--dspy-timeout", type=float, default=900, help="seconds per DSPy row (compile + eval)")
    ap.add_argument(
        "--time-limit", type=float, default=0, help="seconds: rows not started by then are recorded as not run"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="react")
    a = ap.parse_args()
    frameworks = a.frameworks.split(",")
    if "dspy" in frameworks:
        require_dspy_venv()
    port, tools_port = free_port(), free_port()
    kinds = a.sets.split(",")
    slots = a.threads * len(kinds)
    # max_tokens: the answer step's (ReAct's step predictor asks for its own 512, its thought and
    # string arguments bounded by the grammar).
    lm = oobleck.LocalLM(
        temperature=0, max_tokens=a.max_tokens, n_parallel=slots, n_ctx=4096 * slots, n_threads=a.n_threads or None
    )
    base_url = lm.serve(port)
    tools = react_tools.serve_tools(tools_port)
    tools_url = f"http://127.0.0.1:{tools_port}"
    react_tools.search("warm up the index")
    sets: dict[str, Any] = {}
    partial = RESULTS / f"{a.out}.partial.json"
    lock = threading.Lock()

    def one_set(kind: str) -> None:
        train, dev = load(kind, a.train, a.dev)
        sets[kind] = {"train": len(train), "dev": len(dev)}
        if "oobleck" in frameworks:
            sets[kind]["oobleck"] = run_oobleck(lm, kind, train, dev, a)
            with lock:
                partial.write_text(json.dumps(sets, sort_keys=True), encoding="utf-8")
        if "dspy" in frameworks:
            sets[kind]["dspy"] = run_dspy(base_url, tools_url, kind, a)
            with lock:
                partial.write_text(json.dumps(sets, sort_keys=True), encoding="utf-8")

    # The sets run side by side (each its oobleck rows, then its DSPy rows) on one model with a
    # slot per concurrent row: the shared 2-core machine could not run them one after the other
    # in the time it had. Seconds per row are therefore measured under the other set's load.
    with concurrent.futures.ThreadPoolExecutor(len(kinds)) as pool:
        list(pool.map(one_set, kinds))
    sets = {k: sets[k] for k in kinds}
    tools.shutdown()
    lm.close()
    partial.unlink(missing_ok=True)
    result = {
        "benchmark": "react",
        "model": {
            "file": lm.model_path.name,
            "served_by": "oobleck.LocalLM (in-process for oobleck, LocalLM.serve() HTTP for DSPy)",
            "temperature": 0,
            "parallel_slots": a.threads,
        },
        "data": {
            "hotpotqa": f"hotpotqa/dev.jsonl[:{a.dev}], train.jsonl[:{a.train}]; search: BM25 over corpus.jsonl, "
            f"k={react_tools.SEARCH_K}, {react_tools.PASSAGE_CHARS} chars each",
            "gsm8k": f"gsm8k/dev.jsonl[:{a.dev}], train.jsonl[:{a.train}]; calculate: ast arithmetic",
        },
        "sets": sets,
        "goal": {"statement": GOALS, **goals(sets)},
        "args": vars(a),
        "elapsed_s": round(time.perf_counter() - T0, 1),
        "machine": machine(),
        "note_cpu": f"{os.cpu_count()} CPUs shared with other jobs",
    }
    write_result(a.out, result)


if __name__ == "__main__":
    main()
