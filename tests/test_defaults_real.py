"""The defaults on the real embedded model: a typed signature with no adapter named parses every
answer, and a program compiled on the defaults gives the same answers in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

import oobleck
from oobleck import Example, InputField, LocalLM, OutputField, Predict, Signature, trace
from oobleck.calibration import CONTENT_FREE
from oobleck.evaluation import evaluate
from oobleck.metrics import ExactMatch
from oobleck.optimize import BootstrapFewShot

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "agnews_20.jsonl"
LABELS = ("World", "Sports", "Business", "Sci/Tech")


class Topic(Signature):
    """Classify the topic of the news article."""

    text: str = InputField()
    label: Literal["World", "Sports", "Business", "Sci/Tech"] = OutputField()


def rows() -> list[Example]:
    with FIXTURE.open(encoding="utf-8") as f:
        return [Example(text=r["text"], label=r["label"]).with_inputs("text") for r in map(json.loads, f)]


@pytest.fixture(scope="module")
def default_lm():
    """LocalLM() exactly as a new user builds it: no settings at all."""
    lm = LocalLM()
    yield lm
    lm.close()


def test_typed_signature_with_no_adapter_parses_every_answer(default_lm):
    program = Predict(Topic, lm=default_lm)  # no adapter named
    with trace() as t:
        result = evaluate(program, rows(), ExactMatch(field="label"), num_threads=4, progress=False, max_errors=None)
    assert [r.error for r in result.rows if r.error] == []  # zero parse failures
    assert all(r.prediction is not None and r.prediction.label in LABELS for r in result.rows)
    # One scoring call per prediction, plus one per content-free input for the label prior,
    # estimated once for all four threads; no retries, every call counted and traced.
    assert result.usage.calls == len(t.entries) == 20 + len(CONTENT_FREE) and result.usage.retries == 0
    assert program.adapter_choice()[0].name == "template"
    assert program.mode_choice()[0] == "score"


# Loads the artifact in a fresh interpreter, without the program's code, and answers the rows.
_CHILD = """
import json, sys
import oobleck
art = oobleck.load(sys.argv[1])
lm = oobleck.LocalLM()
texts = json.loads(sys.stdin.read())
with oobleck.context(lm=lm):
    print(json.dumps([art(text=t).label for t in texts]))
lm.close()
"""


def test_compiled_on_the_defaults_gives_the_same_answers_in_a_fresh_process(default_lm, tmp_path):
    data = rows()
    train, dev = data[::2], data[1::2]
    program = Predict(Topic, lm=default_lm)
    compiled = BootstrapFewShot(ExactMatch(field="label"), max_bootstrapped_demos=2, max_labeled_demos=4).compile(
        program, trainset=train
    )
    assert compiled.predictors()[0].demos  # the compile did something worth saving
    texts = [ex.text for ex in dev]
    here = [compiled(text=t).label for t in texts]  # the first call estimates the label prior
    assert here == [compiled(text=t).label for t in texts]  # same process, asked again
    path = tmp_path / "topic.json"
    compiled.save(path)
    saved = json.loads(path.read_text())["predictors"][0]
    assert saved["adapter"]["name"] == "template" and "mode='score'" in saved["adapter"]["reason"]
    # The prior estimated under the compiled prompt travels with it: the fresh process
    # divides out the same prior instead of estimating its own.
    state = saved["extra"]["calibration_state"]
    assert state["method"] == "contextual" and state["prompt"] == compiled.predictors()[0].prompt_fingerprint()
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == here
    # Saved as a default ("auto"): chosen again for the LM in use, for the same reason.
    assert saved["adapter"].get("auto") is True
    loaded = oobleck.load(path).predictors["self"]
    assert loaded.adapter_choice(default_lm)[1] == saved["adapter"]["reason"]
    assert "no LM is set" in loaded.adapter_choice()[1]  # without an LM it says it will follow one
