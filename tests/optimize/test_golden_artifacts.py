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
typical compile, see ``test_estimate_accuracy.py``); with ``estimate`` removed, every file is
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
    "bootstrap": "7c07b4b49a7344275a90b16c79f9470d85a012017a0af8f589e3ad96a7a522d0",
    "random_search": "525f878446b31c9ca9afabb6bff9359629dddf7b6e427d4e5f45f7e04a93e500",
    "instruction_search": "21e3086c31fefeb2a7841fb9a4c6cffac4aed78d803807cf1c0d62c5d9d250bb",
    "joint_search": "f6b3f6b13da39a12ad42f735e7f9bb691dcf78174fbd900d2946be34acc04887",
    "reflective": "1ca1bd010931b4cd83ff817882945eefb367678636b7ae9c0294027688ae14ab",
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
