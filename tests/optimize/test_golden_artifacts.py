"""Seeded compiles save the same bytes as the recorded run: a refactor that changes what an
optimizer chooses, records or writes shows up here as a changed sha256.

The digests were recorded at b53930a, before the consolidation of issue 16; those of the four
searching optimizers were updated by issue 18 (the verdict on confirming rows, the sequential
racing test): their provenance gained ``selection_verdict``, ``settings.confirm_fraction``, the
split's confirmation note and racing's alpha, and InstructionSearch's racing now drops three
candidates that are certainly worse on the 6 valset rows (the chosen programs are unchanged).
Issue 20 added ``"auto": true`` to each default (unnamed) adapter record; with that line removed
every file is byte for byte the one recorded before. It also changed the dry-run estimate each artifact
records (``provenance.estimate``: the expected prompt and completion tokens and LM calls of a
typical compile, see ``test_estimate_accuracy.py``) and ``scores.best_prompt_tokens`` (a prompt's
tokens now count 4 per message for the chat template); with those two removed, every file is
byte for byte the one recorded before that change.
Issue 22 added ``scores.trajectory`` to the four searching optimizers (each candidate's score and
the LM calls spent when its scoring ended, for the report's plot); with that key removed each
file is byte for byte the one recorded before.
A change that is meant to alter an artifact updates the digest in the same commit and says why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _opt_helpers import keyword_answer, sentiment_rows
from test_instruction_search import instruction_sensitive
from test_joint_search import joint_lm
from test_proposer import Review
from test_reflective import reflective_lm, with_feedback

from oobleck import FakeLM, Module, Predict
from oobleck.metrics import exact_match
from oobleck.optimize import (
    KNN,
    BootstrapFewShot,
    InstructionSearch,
    JointSearch,
    LabeledFewShot,
    RandomSearch,
    ReflectiveEvolution,
)


def _compile(name: str) -> Module:
    data = sentiment_rows()
    train, val = data[:6], data[6:]
    if name == "labeled":
        return LabeledFewShot(k=3).compile(Predict(Review, lm=FakeLM(keyword_answer)), trainset=train, seed=2)
    if name == "bootstrap":
        return BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=1).compile(
            Predict(Review, lm=FakeLM(keyword_answer)), trainset=train, seed=2
        )
    if name == "random_search":
        return RandomSearch(exact_match, num_candidates=3, max_bootstrapped_demos=2).compile(
            Predict(Review, lm=FakeLM(keyword_answer)), trainset=train, valset=val, seed=2, progress=False
        )
    if name == "instruction_search":
        return InstructionSearch(exact_match, breadth=2, depth=2, formats=["one_line", "chat"]).compile(
            Predict(Review, lm=FakeLM(instruction_sensitive)), trainset=train, valset=val, seed=3
        )
    if name == "joint_search":
        pytest.importorskip("optuna")
        opt = JointSearch(
            exact_match, auto=None, num_trials=12, num_instructions=2, num_demo_sets=3, minibatch_size=8,
            full_eval_every=3, max_bootstrapped_demos=1, max_labeled_demos=1,
        )  # fmt: skip
        return opt.compile(Predict(Review, lm=FakeLM(joint_lm)), trainset=train, valset=val, seed=5)
    if name == "reflective":
        return ReflectiveEvolution(with_feedback, iterations=2, minibatch_size=4).compile(
            Predict(Review, lm=FakeLM(reflective_lm)), trainset=train, valset=val, seed=1
        )
    if name == "knn":
        return KNN(k=2).compile(Predict("sentence -> label", lm=FakeLM(keyword_answer)), trainset=data)
    raise AssertionError(name)


GOLDEN: dict[str, str] = {
    "labeled": "441c00ba44c8dda3b96ced47567eda3b84488e7eb9c1d28d077b890ebb467c47",
    "bootstrap": "d51f36dcda4a84e01d962267dcc2b9b7ed876272e7225ae11223520b9dd1c1de",
    "random_search": "155a59283855895e4a2df14bf1136fed92da014a30a9a13352727ce78621d06c",
    "instruction_search": "dd71ce99297ba997919bc1cb05b4542d95c2feeed1a82336d42f39f7ef0681db",
    "joint_search": "d91e8154489e1525115cc3a8a6bc983666a492d4c82b9f451121246cbc6b7f51",
    "reflective": "7759d5c9a48cf734abec1071217ac001147c2d22b6d9bceca85a5472c2186395",
    "knn": "197b82c4192b0e33aaef091344466248ba0c9233e419361e7375b8d8fbc04110",
}

COMPILES: list[str] = [
    "labeled",
    "bootstrap",
    "random_search",
    "instruction_search",
    "joint_search",
    "reflective",
    "knn",
]


def digest(name: str, folder: Path) -> str:
    path = folder / f"{name}.json"
    _compile(name).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", COMPILES)
def test_seeded_compile_saves_the_recorded_bytes(name: str, tmp_path: Path) -> None:
    assert digest(name, tmp_path) == GOLDEN[name]
