"""Hard prompt, then soft prompt: compile demos for SST-2, then tune a soft prompt that starts from them.

SmolLM2-135M-Instruct runs in-process through ``transformers`` (TransformersLM). The
predictor ranks the two labels by likelihood (``mode="score"``: one forward pass, nothing to
parse). First a labelled demo set is chosen (a hard-prompt compile); then prompt tuning
starts from the exact text of that compiled prompt (the soft prompt replaces it, so step 0
scores the same) and trains on the train rows, the metric choosing the checkpoint on held-out
rows. The artifact is JSON plus a safetensors side file referenced by its sha256; it loads
back without any training code.

Needs the transformers extra and the CPU build of torch (see the README). The first run
converts the packaged GGUF model to safetensors once (40-80 s), cached for later runs.
Data: examples/data/sst2_*.jsonl (see examples/data/README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Literal

import oobleck
from oobleck import Cache, CachedLM, Example, Predict
from oobleck.adapters.template import TemplateAdapter
from oobleck.evaluation import evaluate
from oobleck.lm.transformers import TransformersLM
from oobleck.metrics import ExactMatch
from oobleck.optimize import LabeledFewShot
from oobleck.soft import PromptTuning

HERE = Path(__file__).resolve().parent


class Sentiment(oobleck.Signature):
    """Classify the sentiment of a sentence from a movie review."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def read_rows(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as f:
        return [Example(json.loads(line)).with_inputs("text") for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "sst2_soft.json"), help="where to write the artifact")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="a few rows and steps (used by the test suite)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    rows = read_rows(HERE / "data" / "sst2_train.jsonl")
    dev = read_rows(HERE / "data" / "sst2_dev.jsonl")
    if args.quick:
        train, val, dev, steps, k = rows[:4], rows[100:102], dev[:4], 1, 2
    else:
        train, val, dev, steps, k = rows[:48], rows[100:116], dev[:60], args.steps, 4
    lm = CachedLM(TransformersLM(), cache=Cache(args.cache))
    program = Predict(Sentiment, lm=lm, adapter=TemplateAdapter(output="prefix"), mode="score")
    metric = ExactMatch(field="label")

    started = time.perf_counter()
    zero = evaluate(program, dev, metric, num_threads=8, progress=False)
    hard = LabeledFewShot(k=k).compile(program, trainset=train, seed=0)
    hard_score = evaluate(hard, dev, metric, num_threads=8, progress=False)
    tuned = PromptTuning(metric=metric, init="hard_prompt", steps=steps, batch_size=4).compile(
        hard, trainset=train, valset=val, seed=0
    )
    soft_score = evaluate(tuned, dev, metric, num_threads=8, progress=False)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tuned.save(out)
    reloaded = oobleck.load(out, lm=lm)
    report = tuned.provenance["scores"]["predictors"]["self"]

    print(f"SST-2 dev ({len(dev)} rows), SmolLM2-135M-Instruct via transformers, labels scored")
    print(f"  zero-shot          : {zero.score:5.1f}%")
    print(f"  {k} labelled demos   : {hard_score.score:5.1f}%")
    print(
        f"  + soft prompt      : {soft_score.score:5.1f}%  ({tuned.soft_prompt.num_virtual_tokens} virtual tokens "
        f"from the hard prompt's text, {report['steps']} steps, loss {report['first_loss']} -> {report['last_loss']})"
    )
    print(f"  reloaded artifact  : {reloaded(text='A gorgeous, funny and moving film.').label}")
    print(f"  wall time          : {time.perf_counter() - started:.1f} s; artifact {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
