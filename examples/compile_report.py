"""Compile, then read what the compile did: the summary, and the report page to open in a browser.

RandomSearch on an SST-2 classifier on the embedded SmolLM2: the dry-run estimate first, then
the compile, then ``compiled.compile_summary()`` (LM calls, prompt and completion tokens, wall
time, start and winner scores, the paired interval and the verdict on confirming rows) and
``oobleck.report.write_report``: one self-contained HTML page with the result, the cost, a
score-versus-LM-calls plot, the candidates table and the final prompt. The same page comes from
the saved artifact with ``oobleck report sst2_report.json -o report.html`` (less the token split
and the wall time, which an artifact does not keep). Every LM call goes through a disk cache.

    python examples/compile_report.py [--quick]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Literal

import oobleck
from oobleck import Cache, CachedLM, Example, LocalLM, Predict
from oobleck.metrics import ExactMatch
from oobleck.optimize import RandomSearch
from oobleck.report import write_report

HERE = Path(__file__).resolve().parent


class Sentiment(oobleck.Signature):
    """Classify the sentiment of a sentence from a movie review."""

    text: str = oobleck.InputField(desc="a sentence from a movie review")
    label: Literal["positive", "negative"] = oobleck.OutputField()


def read_rows(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as f:
        return [Example(json.loads(line)).with_inputs("text") for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "sst2_report.json"), help="where to write the artifact")
    parser.add_argument("--report", help="where to write the page (default: the artifact's name, .html)")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="a few rows (used by the test suite)")
    args = parser.parse_args(argv)

    rows = read_rows(HERE / "data" / "sst2_train.jsonl")
    # 24 scoring rows at least: 10 of them confirm the winner, never seen by the search.
    train, val = (rows[:6], rows[100:124]) if args.quick else (rows[:24], rows[100:148])
    lm = CachedLM(LocalLM(temperature=0.0, max_tokens=32, n_parallel=2), cache=Cache(args.cache))
    program = Predict(Sentiment, lm=lm)
    optimizer = RandomSearch(
        ExactMatch(field="label"),
        num_candidates=1 if args.quick else 3,
        max_bootstrapped_demos=4,
        max_labeled_demos=4,
        num_threads=2,
    )
    print(f"planned: {optimizer.compile(program, trainset=train, valset=val, dry_run=True)}")
    compiled = optimizer.compile(program, trainset=train, valset=val, seed=0, progress=False)
    print(compiled.compile_summary())

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiled.save(out)
    page = write_report(compiled, args.report or out.with_suffix(".html"), title=out.name)
    print(f"wrote {out} and {page}  (or: oobleck report {out} -o report.html)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
