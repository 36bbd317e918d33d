"""Classify support tickets by ranking the labels, calibrated: what a small local model needs.

A signature whose output is a Literal, on a backend that scores completions (the embedded
SmolLM2 does), answers by likelihood: each allowed label is scored after the prompt and the
label prior the prompt itself creates is divided out. This example shows the four ways side by
side on the same rows (generating constrained JSON, scoring raw, scoring with contextual and
with batch calibration), the label probabilities every scored answer carries, calibration
metrics on them, a compile under calibration (each candidate refits its own prior), and the
calibrated program saved and loaded with its prior.

Run it with ``python examples/label_scoring.py`` inside the venv (``--quick`` for a few rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

import oobleck
from oobleck import Cache, CachedLM, Example, LocalLM, Predict
from oobleck.adapters import JSONAdapter
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch, brier_score, expected_calibration_error, log_loss
from oobleck.optimize import RandomSearch, paired_interval

HERE = Path(__file__).resolve().parent


class Ticket(oobleck.Signature):
    """Route the customer's message to the team that handles it."""

    text: str = oobleck.InputField(desc="a customer's message")
    label: Literal["billing", "shipping", "technical"] = oobleck.OutputField()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "tickets.json"), help="where to write the artifact")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="a few rows only (used by the test suite)")
    args = parser.parse_args(argv)

    with (HERE / "data" / "support_tickets.jsonl").open(encoding="utf-8") as f:
        rows = [Example(json.loads(line)).with_inputs("text") for line in f if line.strip()]
    train, dev = rows[:18], rows[18:]
    if args.quick:
        train, dev = train[:9], dev[:6]

    lm = CachedLM(LocalLM(max_tokens=16), cache=Cache(args.cache))
    metric = ExactMatch(field="label")
    programs = {
        "generate (JSON)": Predict(Ticket, lm=lm, adapter=JSONAdapter(), mode="generate"),
        "score, raw": Predict(Ticket, lm=lm, calibration=None),
        "score + contextual (the default)": Predict(Ticket, lm=lm),
        "score + batch": oobleck.calibrate(Predict(Ticket, lm=lm), [r.inputs() for r in train]),
    }
    print(f"{len(dev)} support tickets, SmolLM2-135M-Instruct; default: {Predict(Ticket, lm=lm).mode_choice()[1]}")
    results = {}
    for name, program in programs.items():
        result = evaluate(program, dev, metric, progress=False)
        results[name] = result
        line = f"  {name:34s} {result.score:5.1f}% accuracy"
        if name != "generate (JSON)":
            golds = [r.label for r in dev]
            dists = [row.prediction.probabilities["label"] for row in result.rows]
            line += (
                f"   log-loss {log_loss(golds, dists):.3f}  Brier {brier_score(golds, dists):.3f}"
                f"  ECE {expected_calibration_error(golds, dists):.3f}"
            )
        print(line)
    first = results["score + contextual (the default)"].rows[0].prediction
    print(f"  probabilities of the first answer: { {k: round(v, 3) for k, v in first.probabilities['label'].items()} }")

    # Compile under batch calibration: every candidate (other demos) refits its own prior on
    # the training inputs the first time it scores, so candidates are compared as they will run.
    start = Predict(Ticket, lm=lm, calibration="batch")
    compiled = RandomSearch(
        metric, num_candidates=1 if args.quick else 3, max_bootstrapped_demos=2, max_labeled_demos=2
    ).compile(start, trainset=train[: len(train) // 2], valset=train[len(train) // 2 :], seed=0, progress=False)
    after = evaluate(compiled, dev, metric, progress=False)
    before = results["score + batch"]
    gain = paired_interval([r.score for r in after.rows], [r.score for r in before.rows])
    print(
        f"  compiled (RandomSearch, batch-calibrated): {after.score:5.1f}% ({len(compiled.predictors()[0].demos)} demos); "
        f"against zero-shot on these rows: {gain}"
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiled.save(out)
    loaded = oobleck.load(out, lm=lm)
    again = loaded(text=dev[0].text)
    same = again.probabilities == compiled(text=dev[0].text).probabilities
    print(
        f"  saved with its prior ({loaded.predictors['self'].calibration_state.describe()[:60]}...); "
        f"loaded answers the same: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
