"""Compile an SST-2 sentiment classifier on the embedded SmolLM2 model.

On the defaults: the answer is a Literal and the embedded model scores completions, so the
program ranks the two labels by likelihood and divides out the label prior (contextual
calibration, estimated under each prompt) instead of generating text. Zero-shot first, then
RandomSearch over bootstrapped demo sets (chosen on rows held out from the training file and
confirmed on others, never on dev), then the compiled program on the same dev rows. Prints
both scores and their paired difference with its interval, and writes the frozen artifact.
Every LM call goes through a disk cache, so a second run costs no model time and writes a
byte-identical artifact.

Run it with ``make demo`` (or ``python examples/compile_sst2.py`` inside the venv).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import oobleck
from oobleck import Cache, CachedLM, Example, LocalLM, Predict
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch
from oobleck.optimize import RandomSearch, paired_interval, verdict_lines

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
    parser.add_argument("--out", default=str(HERE / "out" / "sst2.json"), help="where to write the artifact")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="a few rows only (used by the test suite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("oobleck").setLevel(logging.INFO)

    train_rows = read_rows(HERE / "data" / "sst2_train.jsonl")
    dev = read_rows(HERE / "data" / "sst2_dev.jsonl")
    if args.quick:
        trainset, valset, dev, candidates = train_rows[:6], train_rows[100:104], dev[:6], 1
    else:
        # Candidates are chosen on held-out training rows, balanced between the labels: on a
        # skewed valset a program that always answers the majority label looks good.
        rest = train_rows[100:]
        valset = [r for r in rest if r.label == "positive"][:30] + [r for r in rest if r.label == "negative"][:30]
        trainset, candidates = train_rows[:100], 4

    # The defaults: LocalLM() decodes greedily, and with no adapter named the program gets
    # constrained JSON answers because the embedded model declares structured output.
    lm = CachedLM(LocalLM(max_tokens=32, n_parallel=4), cache=Cache(args.cache))
    program = Predict(Sentiment, lm=lm)
    metric = ExactMatch(field="label")

    started = time.perf_counter()
    started_load = list(os.getloadavg())
    before = evaluate(program, dev, metric, num_threads=4, progress=False)
    optimizer = RandomSearch(
        metric=metric,
        num_candidates=candidates,
        max_bootstrapped_demos=4,
        max_labeled_demos=4,
        num_threads=4,
        max_lm_calls=2000,
    )
    compiled = optimizer.compile(program, trainset=trainset, valset=valset, seed=args.seed)
    after = evaluate(compiled, dev, metric, num_threads=4, progress=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiled.save(out)

    spent = compiled.compile_usage  # this session's calls (the artifact records the cache-independent total)
    adapter, why = program.adapter_choice()
    mode, _ = program.mode_choice()
    gain = paired_interval([r.score for r in after.rows], [r.score for r in before.rows])
    wall = time.perf_counter() - started
    print(
        f"SST-2 dev ({len(dev)} rows), SmolLM2-135M-Instruct in-process, mode {mode!r}, adapter {adapter.name!r} ({why})"
    )
    print(f"  zero-shot : {before.score:5.1f}% accuracy")
    print(f"  compiled  : {after.score:5.1f}% accuracy  ({len(compiled.predictors()[0].demos)} demos)")
    print(f"  on dev    : {gain}{'' if gain.significant else '; not significant'}")
    for line in verdict_lines(compiled.provenance["scores"]):
        print(f"  compile   : {line}")
    print(f"  compile   : {spent.calls} LM calls, {spent.cache_hits} answered from the cache")
    print(f"  wall time : {wall:.1f} s")
    print(f"  artifact  : {out}")
    if args.result:
        result = {
            "dev_rows": len(dev),
            "mode": mode,
            "adapter": adapter.name,
            "zero_shot": round(before.score, 2),
            "compiled": round(after.score, 2),
            "demos": len(compiled.predictors()[0].demos),
            "gain": {
                "points": round(gain.gain, 2),
                "low": round(gain.low, 2),
                "high": round(gain.high, 2),
                "significant": gain.significant,
            },
            "verdict": compiled.provenance["scores"].get("verdict"),
            "compile_calls": spent.calls,
            "cache_hits": spent.cache_hits,
            "wall_s": round(wall, 1),
            "run": _run_record(started_load),
        }
        Path(args.result).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


def _run_record(load_at_start: list[float]) -> dict[str, object]:
    """Which code made the figures, how it was run and how busy the machine was."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(HERE), *args], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": list(os.getloadavg()),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    sys.exit(main())
