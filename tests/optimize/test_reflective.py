"""ReflectiveEvolution: Pareto bookkeeping, feedback reaching the reflection prompt, budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _opt_helpers import field_of, sentiment_rows
from test_proposer import Review, kind

from oobleck import Cache, CachedLM, Example, FakeLM, LMRequest, Predict
from oobleck.errors import ConfigError
from oobleck.lm.cached import cache_key
from oobleck.optimize._identity import program_fingerprint
from oobleck.optimize.reflective import ReflectiveEvolution, pareto_front

GOOD = "Answer negative unless the review praises the film."
POSITIVE = ("funny", "best", "delightful", "beautifully", "joy", "moving", "warm")


def truth(sentence: str) -> str:
    return "positive" if any(w in sentence for w in POSITIVE) else "negative"


def with_feedback(example: Example, pred, trace=None):  # type: ignore[no-untyped-def]
    right = pred.label == example.label
    return {
        "score": float(right),
        "feedback": "right" if right else f"FEEDBACK: said {pred.label}, the review is {example.label}",
    }


def reflective_lm(request: LMRequest) -> dict[str, str]:
    k = kind(request)
    if k == "summary":
        return {"summary": "Movie reviews."}
    if k == "reflect":
        # rewrites only when it was shown the feedback
        return {"instruction": GOOD if "FEEDBACK: said positive" in request.messages[-1].content else "Try harder."}
    system = request.messages[0].content
    s = field_of(request, "sentence")
    return {"label": truth(s) if system.startswith(GOOD) else "positive"}


def test_pareto_front_on_a_hand_made_table() -> None:
    table = {
        "start": [1, 0, 0, 1, 1],
        "a": [1, 1, 0, 1, 1],  # dominates start
        "b": [0, 0, 1, 0, 1],  # alone best on row 2, tied on row 4
        "c": [0, 1, 0, 0, 0],  # ties for best on row 1 but a dominates it
        "d": [0.5, 0.5, 0.5, 0.5, 0],  # best nowhere, though nobody dominates it
    }
    assert pareto_front(table) == {"a": 4, "b": 2}
    # a row where everyone ties counts for every undominated candidate, d included
    tied = {k: [*v[:4], 0] for k, v in table.items()}
    assert pareto_front(tied) == {"a": 4, "b": 2, "d": 1}
    assert pareto_front({}) == {}
    assert pareto_front({"x": [0, 0]}) == {"x": 2}
    with pytest.raises(ConfigError):
        pareto_front({"x": [1], "y": [1, 0]})


def test_feedback_reaches_the_reflection_prompt_and_the_child_wins() -> None:
    data = sentiment_rows()
    lm = FakeLM(reflective_lm)
    opt = ReflectiveEvolution(with_feedback, iterations=2, minibatch_size=4)
    best = opt.compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:])
    reflections = [r for r in lm.requests if kind(r) == "reflect"]
    assert reflections, "no reflection call was made"
    shown = reflections[0].messages[-1].content.split("[[ ## examples ## ]]")[1]
    assert "FEEDBACK: said positive, the review is negative" in shown
    assert "output label: positive" in shown and "sentence: " in shown
    assert best.predictors()[0].instructions == GOOD
    scores = best.provenance["scores"]
    child = next(c for c in scores["candidates"] if c["kind"] == "reflection" and c.get("accepted"))
    assert child["minibatch"]["child"] > child["minibatch"]["parent"] and child["parent"] == 0
    assert scores["best"] == child["id"] and scores["selection_verdict"]["gain"] > 0
    assert str(child["id"]) in scores["pareto_front"]


def test_without_feedback_the_reflection_sees_what_was_expected() -> None:
    data = sentiment_rows()
    lm = FakeLM(reflective_lm)

    def plain(example, pred, trace=None):  # type: ignore[no-untyped-def]
        return pred.label == example.label

    ReflectiveEvolution(plain, iterations=1).compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:])
    shown = next(r for r in lm.requests if kind(r) == "reflect").messages[-1].content
    assert "wrong; expected label=negative" in shown


def test_a_child_that_loses_on_its_minibatch_is_never_fully_scored() -> None:
    data = sentiment_rows()

    def stubborn(request: LMRequest) -> dict[str, str]:
        if kind(request) == "reflect":
            return {"instruction": "Say positive always."}
        return {"label": "positive", "summary": "x"}

    lm = FakeLM(stubborn)
    best = ReflectiveEvolution(with_feedback, iterations=1, minibatch_size=6).compile(
        Predict(Review, lm=lm), trainset=data[:6], valset=data[6:]
    )
    child = next(c for c in best.provenance["scores"]["candidates"] if c["kind"] == "reflection")
    assert child["accepted"] is False and child["rows_scored"] == 0 and child["score"] is None


@pytest.mark.parametrize("limit", [4, 9, 14])
def test_budget_is_never_exceeded_and_resume_pays_nothing_twice(tmp_path: Path, limit: int) -> None:
    data = sentiment_rows()
    backend = FakeLM(reflective_lm)
    lm = CachedLM(backend, cache=Cache(tmp_path / "cache"))
    ckpt = tmp_path / "ck.json"

    def opt(max_calls: int | None) -> ReflectiveEvolution:
        return ReflectiveEvolution(
            with_feedback, iterations=3, minibatch_size=3, demos=True, max_demos=1, max_lm_calls=max_calls
        )

    stopped = opt(limit).compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:], checkpoint=ckpt)
    assert len(backend.requests) <= limit and stopped.provenance["stopped_early"]
    resumed = opt(None).compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:], checkpoint=ckpt)
    keys = [cache_key(backend.identity, r) for r in backend.requests]
    assert len(keys) == len(set(keys))
    fresh = opt(None).compile(Predict(Review, lm=FakeLM(reflective_lm)), trainset=data[:6], valset=data[6:])
    assert program_fingerprint(fresh) == program_fingerprint(resumed)
    assert json.dumps(fresh.provenance["scores"], sort_keys=True) == json.dumps(
        resumed.provenance["scores"], sort_keys=True
    )


def test_dry_run_bounds_the_real_cost() -> None:
    data = sentiment_rows()
    lm = FakeLM(reflective_lm)
    opt = ReflectiveEvolution(with_feedback, iterations=3, minibatch_size=3, demos=True, max_demos=1, racing=False)
    est = opt.compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:], dry_run=True)
    assert lm.requests == []
    opt.compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:])
    assert est.min_lm_calls <= len(lm.requests) <= est.lm_calls
