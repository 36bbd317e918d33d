"""Ensemble and majority: voting, seeded member subsets, failing members."""

from __future__ import annotations

import pytest

from oobleck import ConfigError, FakeLM, LMResponseError, Predict, Prediction
from oobleck.optimize import Ensemble, ensemble, majority


def member(answer: str) -> Predict:
    return Predict("q -> a", lm=FakeLM([{"a": answer}], cycle=True))


def test_majority_votes_on_the_first_field_with_ties_to_the_first_seen() -> None:
    assert majority([Prediction(a="x"), Prediction(a="y"), Prediction(a="Y.")]).a == "y"
    assert majority([Prediction(a="x"), Prediction(a="y")]).a == "x"
    assert majority([None, Prediction(a="z", b="1"), Prediction(a="w", b="1")], field="b").a == "z"
    with pytest.raises(ConfigError):
        majority([None])


def test_ensemble_votes_and_records_provenance() -> None:
    members = [member("1"), member("2"), member("2")]
    combined = ensemble(members)
    assert combined(q="?").a == "2"
    assert combined.provenance["optimizer"] == "Ensemble" and combined.provenance["settings"]["members"] == 3
    assert combined.programs[0] is not members[0]


def test_size_picks_the_same_members_for_the_same_inputs() -> None:
    combined = Ensemble([member(str(i)) for i in range(6)], size=3, seed=4, reduce=None)
    first = [p.a for p in combined(q="hello")]
    assert len(first) == 3
    assert [p.a for p in combined(q="hello")] == first


def test_failing_members_are_outvoted() -> None:
    def broken(request):  # type: ignore[no-untyped-def]
        raise LMResponseError("down")

    combined = Ensemble([Predict("q -> a", lm=FakeLM(broken)), member("ok")])
    assert combined(q="?").a == "ok"
    with pytest.raises(LMResponseError):
        Ensemble([Predict("q -> a", lm=FakeLM(broken))])(q="?")
