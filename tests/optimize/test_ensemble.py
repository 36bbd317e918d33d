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


def test_failures_are_reported_in_the_result_and_setup_errors_propagate() -> None:
    from oobleck import BudgetExceededError

    def broken(request):  # type: ignore[no-untyped-def]
        raise LMResponseError("server down")

    result = Ensemble([Predict("q -> a", lm=FakeLM(broken)), member("ok"), member("ok")])(q="?")
    assert result.a == "ok"
    assert (
        len(result.warnings) == 1
        and "1 of 3 members failed" in result.warnings[0]
        and "server down" in result.warnings[0]
    )

    no_lm = Ensemble([Predict("q -> a"), member("ok")])
    with pytest.raises(ConfigError):
        no_lm(q="?")

    def spent(request):  # type: ignore[no-untyped-def]
        raise BudgetExceededError("budget spent")

    with pytest.raises(BudgetExceededError):
        Ensemble([Predict("q -> a", lm=FakeLM(spent)), member("ok")])(q="?")

    def bug(request):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("a bug, not a vote")

    with pytest.raises(ZeroDivisionError):
        Ensemble([Predict("q -> a", lm=FakeLM(bug)), member("ok")])(q="?")


def test_provenance_adds_up_the_members_compile_costs() -> None:
    from oobleck import Example, Usage
    from oobleck.optimize import LabeledFewShot

    rows = [Example(q=str(i), a="x").with_inputs("q") for i in range(3)]
    compiled = [LabeledFewShot(k=2).compile(member("x"), trainset=rows, seed=s) for s in (0, 1)]
    compiled[0].provenance = {**compiled[0].provenance, "lm_calls": 7, "tokens": 100}
    compiled[1].provenance = {**compiled[1].provenance, "lm_calls": 5, "tokens": 40, "stopped_early": True}
    compiled[0].compile_usage, compiled[1].compile_usage = Usage(calls=7), Usage(calls=5)
    combined = ensemble(compiled)
    assert (combined.provenance["lm_calls"], combined.provenance["tokens"]) == (12, 140)
    assert combined.provenance["stopped_early"] is True and combined.compile_usage.calls == 12
    unknown = ensemble([member("x"), compiled[0]])  # a member nobody compiled: cost unknown, not 0
    assert unknown.provenance["lm_calls"] is None and unknown.compile_usage is None
