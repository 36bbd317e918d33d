"""Let oobleck pick the optimizer: Auto on an SST-2 classifier, one call budget, a confirmed verdict.

Auto runs a portfolio (few-shot demo search, prompt format search, JointSearch when optuna is
installed, ReflectiveEvolution) on the embedded SmolLM2, each member with its share of one
LM-call budget. It keeps the member whose program scores best on the selection rows, then
states that program's gain over the starting program on confirming rows no member ever saw;
dev accuracy is measured on yet other rows. Every LM call goes through a disk cache: a second
run costs no model time and writes a byte-identical artifact.

    python examples/auto_compile.py [--quick] [--budget N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Literal

import oobleck
from oobleck import Cache, CachedLM, Example, JSONAdapter, LocalLM, Predict
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch
from oobleck.optimize import Auto, verdict_lines

HERE = Path(__file__).resolve().parent


class Sentiment(oobleck.Signature):
    """Classify the sentiment of a sentence from a movie review."""

    text: str = oobleck.InputField(desc="a sentence from a movie review")
    label: Literal["positive", "negative"] = oobleck.OutputField()


def read_rows(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as f:
        return [Example(json.loads(line)).with_inputs("text") for line in f if line.strip()]


def balanced(rows: list[Example], n: int) -> list[Example]:
    """``n`` rows, half of each label, in their file order."""
    pos = [r for r in rows if r.label == "positive"][: n // 2]
    neg = [r for r in rows if r.label == "negative"][: n - len(pos)]
    return [r for r in rows if any(r is x for x in pos + neg)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "sst2_auto.json"), help="where to write the artifact")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="a few rows and a small budget (used by the test suite)")
    parser.add_argument("--budget", type=int, default=None, help="LM calls for the whole compile")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rows = read_rows(HERE / "data" / "sst2_train.jsonl")
    dev = read_rows(HERE / "data" / "sst2_dev.jsonl")
    if args.quick:  # 24 scoring rows: 14 select, 10 confirm (the fewest a verdict is stated on)
        train, val, dev, budget = rows[:8], balanced(rows[100:], 24), dev[:10], args.budget or 160
    else:
        train, val, dev, budget = rows[:40], balanced(rows[100:], 80), dev[:100], args.budget or 2000

    lm = CachedLM(LocalLM(temperature=0.0, max_tokens=48, n_parallel=4), cache=Cache(args.cache))
    program = Predict(Sentiment, lm=lm, adapter=JSONAdapter())
    metric = ExactMatch(field="label")

    started = time.perf_counter()
    optimizer = Auto(metric, budget=budget, num_threads=4)
    print(f"planned: {optimizer.compile(program, trainset=train, valset=val, dry_run=True)}")
    compiled = optimizer.compile(program, trainset=train, valset=val, seed=args.seed, progress=False)
    before = evaluate(program, dev, metric, num_threads=4, progress=False)
    after = evaluate(compiled, dev, metric, num_threads=4, progress=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiled.save(out)

    scores = compiled.provenance["scores"]
    print(f"SST-2, SmolLM2-135M-Instruct in-process, budget {budget} LM calls")
    for m in scores["members"]:
        if "skipped" in m:
            print(f"  {m['name']:<11}: skipped ({m['skipped']})")
        else:
            print(f"  {m['name']:<11}: selection score {m['selection_score']}, {m.get('calls')} calls of {m['budget']}")
    print(f"  winner     : {scores['winner']} ({scores['why']})")
    for line in verdict_lines(scores):
        print(f"  {line}")
    print(f"  dev ({len(dev)} rows): {before.score:5.1f}% -> {after.score:5.1f}%")
    print(f"  compile    : {compiled.compile_usage.calls} LM calls, {compiled.compile_usage.cache_hits} from the cache")
    print(f"  wall time  : {time.perf_counter() - started:.1f} s")
    print(f"  artifact   : {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
