"""LabeledFewShot: k labelled demos per predictor, seeded, never mutating its inputs."""

from __future__ import annotations

from _opt_helpers import sentiment_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from oobleck import ChainOfThought, Module, Predict
from oobleck.optimize import LabeledFewShot
from oobleck.optimize._identity import program_fingerprint


class TwoStep(Module):
    def __init__(self) -> None:
        self.draft = Predict("sentence -> label")
        self.check = ChainOfThought("sentence, draft -> label")

    def forward(self, sentence: str):  # type: ignore[no-untyped-def]
        label = self.draft(sentence=sentence).label
        return self.check(sentence=sentence, draft=label)


def test_k_demos_for_every_predictor_without_touching_the_input() -> None:
    program = TwoStep()
    before = program_fingerprint(program)
    train = sentiment_rows()
    snapshot = [r.to_dict() for r in train]
    compiled = LabeledFewShot(k=3).compile(program, trainset=train, seed=7)
    assert program_fingerprint(program) == before
    assert [r.to_dict() for r in train] == snapshot
    assert compiled is not program
    assert [len(p.demos) for p in compiled.predictors()] == [3, 3]
    assert all(d in train for p in compiled.predictors() for d in p.demos)
    assert compiled.provenance["optimizer"] == "LabeledFewShot"
    assert compiled.provenance["lm_calls"] == 0 and compiled.provenance["stopped_early"] is False


def test_k_zero_clears_and_sample_false_takes_the_first_rows() -> None:
    train = sentiment_rows()
    assert LabeledFewShot(k=0).compile(Predict("sentence -> label"), trainset=train).predictors()[0].demos == []
    firsts = LabeledFewShot(k=2, sample=False).compile(Predict("sentence -> label"), trainset=train)
    assert firsts.predictors()[0].demos == train[:2]


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=0, max_value=12))
def test_same_seed_same_demos(seed: int, k: int) -> None:
    train = sentiment_rows()
    a = LabeledFewShot(k=k).compile(TwoStep(), trainset=train, seed=seed)
    b = LabeledFewShot(k=k).compile(TwoStep(), trainset=train, seed=seed)
    assert program_fingerprint(a) == program_fingerprint(b)
    assert a.provenance == b.provenance
