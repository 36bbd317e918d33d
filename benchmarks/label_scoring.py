"""Label scoring vs generation on the embedded model: accuracy, macro-F1, collapse and cost.

    PYTHONPATH=. python benchmarks/label_scoring.py [--tasks sst2,trec,tweet_sentiment,banking77]
        [--dev 0] [--train 100] [--val 40] [--modes generate,score,contextual,batch]
        [--compile random_search,joint_search] [--no-zero-shot] [--dspy] [--threads 4]
        [--out label_scoring]

SmolLM2-135M-Instruct on ``oobleck.LocalLM(temperature=0)`` in-process, no cache. Per task the
same signature (``<input> -> label: Literal[...]``, the task's one-line instruction) runs as:

  generate     constrained generation, ``JSONAdapter`` (the default before issue 17)
  score        labels ranked by likelihood (``mode="score"``), no calibration
  contextual   scored, prior from content-free inputs (the default on a scoring backend)
  batch        scored, prior from the mean over the first 32 train inputs (refitted per
               candidate when compiling)

each zero-shot (unless ``--no-zero-shot``) and compiled (``--compile``, chosen on --val rows
taken after the --train rows, confirmed on a held-out part of them):

  random_search  RandomSearch, 4 candidates of 4 bootstrapped / 4 labelled demos
  joint_search   JointSearch as compile_instructions.py sets it (auto=None, 8 trials,
                 2 instructions x 3 demo sets, minibatch 8, a full evaluation every 4
                 trials); no format search, so each mode keeps its adapter
Scored modes use the scoring default format (``Name: value`` lines).
``--dspy``: DSPy's MIPROv2 (auto="light") with its JSONAdapter and the schema declared to the
server (grammar-constrained), on the same rows, in the same process run.

Per cell: accuracy and macro-F1 with 95% intervals (Wilson for accuracy, bootstrap over rows
for macro-F1), the share of the most frequent answer beside that label's true share
(collapse), LM calls, tokens, and seconds per dev row. Paired differences (same rows) of each
scored cell against the best generating cell of the same stage, and issue 17's goals as far as
this run's cells allow (label_goals.py; tables.py checks them again across result files).
Writes benchmarks/results/<out>.json after every cell (``"complete": false`` until the run ends).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import (
    TASKS,
    free_port,
    machine,
    read_jsonl,
    require_dspy_venv,
    run_dspy_side,
    signature,
    task_dir,
    wilson,
    write_result,
)
from label_goals import goals

import oobleck
from oobleck.adapters import JSONAdapter
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch
from oobleck.optimize import JointSearch, RandomSearch, paired_interval

MODES = ("generate", "score", "contextual", "batch")
COMPILERS = ("random_search", "joint_search")
MAX_ERRORS = 10_000


def rows_of(task: str, split: str) -> list[oobleck.Example]:
    field = TASKS[task]["input"]
    return [
        oobleck.Example(**{field: r["text"], "label": r["label"]}).with_inputs(field)
        for r in read_jsonl(task_dir(task) / f"{split}.jsonl")
    ]


def program_for(task: str, mode: str, lm: oobleck.LocalLM, calibration_rows: list[oobleck.Example]) -> oobleck.Module:
    sig = signature(task)
    if mode == "generate":
        return oobleck.Predict(sig, lm=lm, adapter=JSONAdapter(), mode="generate")
    if mode == "score":
        return oobleck.Predict(sig, lm=lm, mode="auto", calibration=None)
    if mode == "contextual":
        return oobleck.Predict(sig, lm=lm, mode="auto", calibration="contextual")
    program = oobleck.Predict(sig, lm=lm, mode="auto", calibration="batch")
    return oobleck.calibrate(program, [r.inputs() for r in calibration_rows])


def macro_f1(golds: list[str], preds: list[str | None], labels: tuple[str, ...]) -> float:
    scores = []
    for label in labels:
        tp = sum(1 for g, p in zip(golds, preds) if g == label and p == label)
        fp = sum(1 for g, p in zip(golds, preds) if g != label and p == label)
        fn = sum(1 for g, p in zip(golds, preds) if g == label and p != label)
        if tp + fp + fn == 0:
            continue  # a label neither in the gold rows nor answered does not count
        scores.append(2 * tp / (2 * tp + fp + fn))
    return 100.0 * sum(scores) / len(scores) if scores else 0.0


def f1_interval(golds: list[str], preds: list[str | None], labels: tuple[str, ...], seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    n = len(golds)
    values = []
    for _ in range(400):
        idx = [rng.randrange(n) for _ in range(n)]
        values.append(macro_f1([golds[i] for i in idx], [preds[i] for i in idx], labels))
    values.sort()
    return [round(values[9], 1), round(values[389], 1)]


def cell(task: str, result: Any, dev: list[oobleck.Example], seconds: float, usage: oobleck.Usage) -> dict[str, Any]:
    labels = TASKS[task]["labels"]
    golds = [r.label for r in dev]
    preds = [getattr(row.prediction, "label", None) if row.prediction is not None else None for row in result.rows]
    right = sum(1 for row in result.rows if row.score >= 1.0)
    answered = collections.Counter(p for p in preds if p is not None)
    top, top_n = answered.most_common(1)[0] if answered else (None, 0)
    true_share = 100.0 * golds.count(top) / len(golds) if top is not None else 0.0
    return {
        "accuracy": round(100.0 * right / len(dev), 2),
        "accuracy_ci": wilson(right, len(dev)),
        "macro_f1": round(macro_f1(golds, preds, labels), 2),
        "macro_f1_ci": f1_interval(golds, preds, labels),
        "most_frequent": {
            "label": top,
            "share": round(100.0 * top_n / len(dev), 1),
            "true_share": round(true_share, 1),
        },
        "collapse_ratio": round((top_n / len(dev)) / (true_share / 100.0), 2) if true_share else None,
        "failed_rows": sum(1 for row in result.rows if row.error),
        "dev_calls": usage.calls,
        "dev_cache_hits": usage.cache_hits,
        "dev_tokens": usage.prompt_tokens + usage.completion_tokens,
        "seconds_per_row": round(seconds / len(dev), 3),
        "row_scores": [row.score for row in result.rows],
    }


def optimizer(stage: str, metric: Any, threads: int) -> RandomSearch | JointSearch:
    """The compiler of a stage: RandomSearch as in the first runs, JointSearch as compile_instructions.py sets it."""
    if stage == "random_search":
        return RandomSearch(
            metric,
            num_candidates=4,
            max_bootstrapped_demos=4,
            max_labeled_demos=4,
            num_threads=threads,
            max_errors=MAX_ERRORS,
        )
    return JointSearch(
        metric,
        auto=None,
        num_trials=8,
        num_instructions=2,
        num_demo_sets=3,
        minibatch_size=8,
        full_eval_every=4,
        num_threads=threads,
        max_errors=MAX_ERRORS,
    )


def run_task(
    task: str,
    a: argparse.Namespace,
    lm: oobleck.LocalLM,
    base_url: str | None,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """All cells of one task; ``save(out)`` after each cell (a partial result on disk)."""
    train_all = rows_of(task, "train")
    train, val = train_all[: a.train], train_all[a.train : a.train + a.val]
    dev = rows_of(task, "dev")
    if a.dev:
        dev = dev[: a.dev]
    metric = ExactMatch(field="label")
    out: dict[str, Any] = {"dev_rows": len(dev), "train_rows": len(train), "val_rows": len(val), "cells": {}}
    for mode in a.modes:
        for stage in (*(() if a.no_zero_shot else ("zero_shot",)), *a.compile):
            name = f"{mode}/{stage}"
            started = time.perf_counter()
            program = program_for(task, mode, lm, train[:32])
            compile_info: dict[str, Any] = {}
            if stage in COMPILERS:
                opt = optimizer(stage, metric, a.threads)
                program = opt.compile(program, trainset=train, valset=val, seed=a.seed, progress=False)
                spent = program.compile_usage
                compile_info = {
                    "compile_calls": spent.calls,
                    "compile_tokens": spent.prompt_tokens + spent.completion_tokens,
                    "compile_s": round(time.perf_counter() - started, 1),
                    "demos": len(program.predictors()[0].demos),
                    "verdict": program.provenance["scores"].get("verdict"),
                }
            ev_started = time.perf_counter()
            with oobleck.trace() as t:
                result = evaluate(program, dev, metric, num_threads=a.threads, progress=False, max_errors=MAX_ERRORS)
            seconds = time.perf_counter() - ev_started
            out["cells"][name] = {**cell(task, result, dev, seconds, t.usage), **compile_info}
            save(out)
            c = out["cells"][name]
            print(
                f"  {task:16s} {name:26s} acc {c['accuracy']:5.1f} f1 {c['macro_f1']:5.1f} "
                f"top {c['most_frequent']['share']:5.1f}% (true {c['most_frequent']['true_share']:.1f}%) "
                f"{c['seconds_per_row']:.2f} s/row",
                file=sys.stderr,
                flush=True,
            )
    if base_url is not None:
        dspy = run_dspy_side(
            "compile_instructions.py",
            "--task",
            task,
            "--data",
            str(task_dir(task)),
            "--base-url",
            base_url,
            "--train",
            str(a.train),
            "--val",
            str(a.val),
            "--dev",
            str(len(dev)),
            "--max-tokens",
            "32",
            "--threads",
            str(a.threads),
            "--methods",
            "mipro",
            "--adapter",
            "json",
            "--seed",
            str(a.seed),
            "--prompt-max-tokens",
            "100",
        )
        mipro = dspy["methods"].get("mipro", {})
        out["dspy_mipro_json"] = {k: v for k, v in mipro.items() if k != "_stderr"}
    out["comparisons"] = compare(out, a)
    out["goals"] = goals(out["cells"], out.get("dspy_mipro_json", {}).get("dev_scores"))
    return out


def compare(out: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """Each scored cell against the best generating cell of the same stage, paired on dev rows."""
    cells = out["cells"]
    found: dict[str, Any] = {}
    for stage in ("zero_shot", *a.compile):
        gen = cells.get(f"generate/{stage}")
        if gen is None:
            continue
        for mode in ("score", "contextual", "batch"):
            mine = cells.get(f"{mode}/{stage}")
            if mine is not None:
                found[f"{mode}/{stage} - generate/{stage}"] = paired_interval(
                    mine["row_scores"], gen["row_scores"]
                ).to_dict()
    dspy = out.get("dspy_mipro_json", {})
    rows = dspy.get("dev_scores")
    if rows:
        for mode in ("contextual", "batch"):
            for stage in a.compile:
                mine = cells.get(f"{mode}/{stage}")
                if mine is not None and len(rows) == len(mine["row_scores"]):
                    found[f"{mode}/{stage} - dspy_mipro_json"] = paired_interval(
                        mine["row_scores"], [float(x) for x in rows]
                    ).to_dict()
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="sst2,trec,tweet_sentiment,banking77")
    ap.add_argument("--dev", type=int, default=0, help="first N dev rows (0: all)")
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--compile",
        default="random_search",
        help="comma list of random_search, joint_search; '' for zero-shot only",
    )
    ap.add_argument(
        "--no-zero-shot",
        action="store_true",
        help="skip the zero-shot cells (their rows are in an earlier result file)",
    )
    ap.add_argument("--dspy", action="store_true")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cache",
        default="",
        help="a cache folder shared by the cells (a scored mode then reuses the label scores an "
        "earlier mode paid for: only the first cell's s/row is a cost); default: no cache",
    )
    ap.add_argument("--out", default="label_scoring")
    a = ap.parse_args()
    a.modes = [m for m in a.modes.split(",") if m]
    a.compile = [c for c in a.compile.split(",") if c]
    unknown = set(a.modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown modes {sorted(unknown)}")
    unknown = set(a.compile) - set(COMPILERS)
    if unknown:
        raise SystemExit(f"unknown compilers {sorted(unknown)}; expected some of {list(COMPILERS)}")
    if a.dspy:
        require_dspy_venv()
    started = time.perf_counter()
    port = free_port()
    lm = oobleck.LocalLM(temperature=0, max_tokens=32, n_parallel=a.threads, port=port)
    base_url = None
    if a.dspy:
        lm.server()
        base_url = f"http://127.0.0.1:{port}/v1"
    run_lm: Any = oobleck.CachedLM(lm, cache=a.cache) if a.cache else lm
    tasks: dict[str, Any] = {}

    def save(complete: bool) -> None:
        write_result(
            a.out,
            {
                "benchmark": "label_scoring",
                "complete": complete,
                "model": {"file": lm.model_path.name, "backend": "oobleck.LocalLM", "temperature": 0},
                "settings": {
                    "train": a.train,
                    "val": a.val,
                    "dev": a.dev or "all",
                    "modes": a.modes,
                    "compile": a.compile,
                    "zero_shot": not a.no_zero_shot,
                    "threads": a.threads,
                    "seed": a.seed,
                    "dspy": a.dspy,
                    "cache": bool(a.cache),
                },
                "tasks": tasks,
                "machine": machine(),
                "elapsed_s": round(time.perf_counter() - started, 1),
            },
            quiet=not complete,
        )

    for task in a.tasks.split(","):

        def save_task(out: dict[str, Any], task: str = task) -> None:
            tasks[task] = out
            save(False)

        tasks[task] = run_task(task, a, run_lm, base_url, save_task)
    save(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
