"""BestOfN and Refine: distinct attempts, stop rules, attempts recorded, feedback passed on."""

from __future__ import annotations

from typing import Any

import pytest

import oobleck
from oobleck import BestOfN, CachedLM, FakeLM, Predict, Refine, trace
from oobleck._budget import Budget
from oobleck.errors import BudgetExceededError, ConfigError, LMResponseError, MetricError
from oobleck.lm.cached import Cache


def qa(lm: Any) -> Predict:
    return Predict("question -> answer", lm=lm)


def is_four(inputs: dict[str, Any], pred: Any) -> float:
    return float(str(pred.answer) == "4")


def test_stops_at_the_first_attempt_reaching_the_threshold() -> None:
    lm = FakeLM([{"answer": "3"}, {"answer": "4"}, {"answer": "4"}])
    out = BestOfN(qa(lm), 5, is_four, threshold=1.0)(question="2+2?")
    assert out.answer == "4" and len(lm.requests) == 2
    assert [(a["index"], a["reward"], a["outputs"]) for a in out.attempts] == [
        (0, 0.0, {"answer": "3"}),
        (1, 1.0, {"answer": "4"}),
    ]


def test_returns_the_best_when_none_reaches_the_threshold() -> None:
    lm = FakeLM([{"answer": "1"}, {"answer": "333"}, {"answer": "22"}])
    out = BestOfN(qa(lm), 3, lambda i, p: len(p.answer) / 10, threshold=0.9)(question="q")
    assert out.answer == "333" and [a["reward"] for a in out.attempts] == [0.1, 0.3, 0.2]


def test_attempts_are_distinct_requests_past_a_cache(tmp_path: Any) -> None:
    inner = FakeLM([{"answer": "3"}, {"answer": "4"}])
    lm = CachedLM(inner, Cache(tmp_path / "cache"))
    out = BestOfN(qa(lm), 2, is_four, threshold=1.0)(question="2+2?")
    assert out.answer == "4" and len(inner.requests) == 2  # the second attempt was not a cache hit
    first, second = inner.requests
    assert first.temperature is None and second.temperature == 1.0
    assert first.sample_index == 0 and second.sample_index == 1


def test_a_predictor_temperature_is_kept() -> None:
    lm = FakeLM([{"answer": "3"}, {"answer": "4"}])
    BestOfN(Predict("question -> answer", lm=lm, temperature=0.3), 2, is_four, threshold=1.0)(question="q")
    assert [r.temperature for r in lm.requests] == [0.3, 0.3]


def test_failed_attempts_are_recorded_and_raised_only_when_all_fail() -> None:
    lm = FakeLM(["[[ ## answer ## ]]\nfour", {"answer": 4}])
    out = BestOfN(Predict("question -> answer: int", lm=lm), 3, is_four, threshold=1.0)(question="q")
    assert out.answer == 4 and out.attempts[0]["error"].startswith("ParseError")
    with pytest.raises(LMResponseError):
        BestOfN(qa(FakeLM([])), 2, is_four, threshold=1.0)(question="q")


def test_the_budget_is_never_swallowed() -> None:
    lm = FakeLM([{"answer": "3"}], cycle=True)
    with Budget(max_lm_calls=2).activate(), pytest.raises(BudgetExceededError):
        BestOfN(qa(lm), 5, is_four, threshold=1.0)(question="q")
    assert len(lm.requests) == 2


def test_refine_passes_feedback_to_the_next_attempt() -> None:
    lm = FakeLM([{"answer": "four"}, {"answer": "4.0"}, {"answer": "4"}])

    def reward(inputs: dict[str, Any], pred: Any) -> Any:
        if not pred.answer[0].isdigit():
            return 0.0, "write the number in digits"
        return {"score": 0.5 if "." in pred.answer else 1.0, "feedback": "no decimals"}

    with trace() as t:
        out = Refine(qa(lm), 4, reward, threshold=1.0)(question="2+2?")
    assert out.answer == "4" and [a["feedback"] for a in out.attempts] == [
        "write the number in digits",
        "no decimals",
        "no decimals",
    ]
    systems = [r.messages[0].content for r in lm.requests]
    assert "Feedback" not in systems[0]
    assert 'An earlier attempt answered {"answer": "four"} and scored 0' in systems[1]
    assert systems[1].endswith("Feedback on it: write the number in digits")
    assert systems[2].endswith("Feedback on it: no decimals") and "write the number" not in systems[2]
    assert len(t.entries) == 3  # each attempt's call traced, the hint in its messages
    assert "no decimals" in t.entries[2].messages[0].content


def test_best_of_n_passes_no_feedback() -> None:
    lm = FakeLM([{"answer": "four"}, {"answer": "4"}])
    BestOfN(qa(lm), 2, lambda i, p: (p.answer == "4", "use digits"), threshold=1.0)(question="q")
    assert "use digits" not in lm.requests[1].messages[0].content


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="n must be"):
        BestOfN(qa(FakeLM()), 0, is_four, threshold=1)
    with pytest.raises(ConfigError, match="reward_fn"):
        BestOfN(qa(FakeLM()), 2, "x", threshold=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="wraps a Module"):
        Refine(lambda: 1, 2, is_four, threshold=1)  # type: ignore[arg-type]


def test_every_attempt_failing_raises_its_error_even_when_max_errors_exceeds_n() -> None:
    def broken(inputs: dict[str, Any], pred: Any) -> float:
        raise ValueError("reward broke")

    program = BestOfN(qa(FakeLM([{"answer": "4"}], cycle=True)), 2, broken, threshold=1.0, max_errors=5)
    with pytest.raises(ValueError, match="reward broke"):
        program(question="q")


def test_settings_that_could_not_be_loaded_are_refused_when_built(tmp_path: Any) -> None:
    for bad in (0, -1, "2", 1.5, True):
        with pytest.raises(ConfigError, match="max_errors must be"):
            BestOfN(qa(FakeLM()), 2, is_four, threshold=1, max_errors=bad)  # type: ignore[arg-type]
    for threshold, temperature in (("high", 1.0), (None, 1.0), (1.0, "hot"), (1.0, None)):
        with pytest.raises(ConfigError, match="threshold and temperature must be numbers"):
            BestOfN(qa(FakeLM()), 2, is_four, threshold=threshold, temperature=temperature)  # type: ignore[arg-type]
    # what is accepted saves and loads
    program = BestOfN(qa(FakeLM()), 3, is_four, threshold=1, temperature=0, max_errors=1)
    program.save(tmp_path / "b.json")
    loaded = oobleck.load(tmp_path / "b.json").program
    assert (loaded.n, loaded.threshold, loaded.temperature, loaded.max_errors) == (3, 1.0, 0.0, 1)


def test_a_nan_reward_never_beats_a_number() -> None:
    # A NaN reward (0/0 in a metric) is a failed attempt, as a NaN metric fails its row.
    rewards = iter([float("nan"), 0.5, (float("nan"), "0/0")])
    lm = FakeLM([{"answer": "empty"}, {"answer": "half"}, {"answer": "other"}])
    out = BestOfN(qa(lm), 3, lambda inputs, pred: next(rewards), threshold=1.0)(question="q")
    assert out.answer == "half"
    assert [a["error"] is not None for a in out.attempts] == [True, False, True]
    with pytest.raises(MetricError, match="finite"):
        BestOfN(qa(FakeLM([{"answer": "a"}])), 1, lambda i, p: float("nan"), threshold=1.0)(question="q")
