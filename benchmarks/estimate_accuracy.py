"""How close the dry-run estimate comes to what a compile then spends (issue 22: within 2x).

For each optimizer: ``compile(dry_run=True)`` first, then the compile itself with no cache (every
call reaches the backend), and the ratio spent / estimated for prompt tokens, completion tokens
and LM calls. Two backends: a FakeLM that answers from keywords (4 characters a token, as the
estimate counts) on SST-2 rows, and with ``--real`` the embedded SmolLM2 (its own tokenizer,
label scoring with calibration calls, real parse behaviour).

    python benchmarks/estimate_accuracy.py [--real] [--rows N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, write_result  # noqa: E402

import oobleck  # noqa: E402
from oobleck import Example, FakeLM, LMRequest, Predict  # noqa: E402
from oobleck.metrics import ExactMatch  # noqa: E402
from oobleck.optimize import (  # noqa: E402
    Auto,
    BootstrapFewShot,
    InstructionSearch,
    Optimizer,
    RandomSearch,
    ReflectiveEvolution,
)

DATA = ROOT / "examples" / "data" / "sst2_train.jsonl"


class Sentiment(oobleck.Signature):
    """Classify the sentiment of a sentence from a movie review."""

    text: str = oobleck.InputField(desc="a sentence from a movie review")
    label: Literal["positive", "negative"] = oobleck.OutputField()


def rows(n: int) -> list[Example]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return [Example(json.loads(line)).with_inputs("text") for line in lines[:n]]


def keyword_lm(request: LMRequest) -> dict[str, str]:
    """Right on sentences with a positive or negative keyword, 'positive' otherwise."""
    system, text = request.messages[0].content, request.messages[-1].content.lower()
    if system.startswith("Read these rows"):
        return {"summary": "Short movie review sentences, positive or negative."}
    if system.startswith("You improve the instruction"):
        return {"instruction": "Say whether the review is positive or negative."}
    bad = ("bad", "dull", "worst", "boring", "mess", "fails", "flat", "tedious")
    return {"label": "negative" if any(w in text for w in bad) else "positive"}


def optimizers(metric: Any) -> dict[str, Callable[[], Optimizer]]:
    return {
        "bootstrap": lambda: BootstrapFewShot(metric, max_bootstrapped_demos=4, max_labeled_demos=4),
        "random_search": lambda: RandomSearch(
            metric, num_candidates=2, max_bootstrapped_demos=4, max_labeled_demos=4, num_threads=2
        ),
        "instruction_search": lambda: InstructionSearch(metric, breadth=2, depth=1, num_threads=2),
        "reflective": lambda: ReflectiveEvolution(metric, iterations=2, minibatch_size=4, num_threads=2),
        "auto": lambda: Auto(metric, budget=300, num_threads=2),
    }


def measure(name: str, make: Callable[[], Optimizer], lm_for: Callable[[], Any], data: list[Example]) -> dict[str, Any]:
    half = len(data) // 2
    train, val = data[:half], data[half:]
    estimate = make().compile(Predict(Sentiment, lm=lm_for()), trainset=train, valset=val, dry_run=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = make().compile(Predict(Sentiment, lm=lm_for()), trainset=train, valset=val, seed=0, progress=False)
    u = compiled.compile_usage
    assert u is not None
    calls = u.calls + u.cache_hits

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    return {
        "optimizer": name,
        "rows": {"train": len(train), "val": len(val)},
        "estimate": estimate.to_dict(),
        "spent": {
            "lm_calls": calls,
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "retries": u.retries,
        },
        "ratio": {
            "prompt_tokens": ratio(u.prompt_tokens, estimate.prompt_tokens),
            "completion_tokens": ratio(u.completion_tokens, estimate.completion_tokens),
            "lm_calls": ratio(calls, estimate.expected_lm_calls),
        },
        "within_bounds": estimate.min_lm_calls <= calls <= estimate.lm_calls,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="also compile on the embedded SmolLM2 (minutes)")
    parser.add_argument("--rows", type=int, default=16, help="SST-2 rows, half to train, half to score")
    args = parser.parse_args(argv)
    metric = ExactMatch(field="label")
    data = rows(args.rows)
    result: dict[str, Any] = {
        "fake": [measure(n, m, lambda: FakeLM(keyword_lm), data) for n, m in optimizers(metric).items()]
    }
    if args.real:
        from oobleck import LocalLM

        lm = LocalLM(temperature=0.0, max_tokens=48, n_parallel=2)
        result["local"] = [measure(n, m, lambda: lm, data) for n, m in optimizers(metric).items()]
    for backend, runs in result.items():
        for r in runs:
            print(f"{backend:5s} {r['optimizer']:20s} spent/estimated {r['ratio']}", file=sys.stderr)
    write_result("estimate_accuracy", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
