"""Hostile metric values and probabilities: non-finite scores, thread order, bad distributions."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from oobleck import ConfigError, Example, FakeLM, MetricError, Predict, evaluate
from oobleck.metrics import brier_score, expected_calibration_error, log_loss, outcome

SCORES = [0.1, 0.2, 0.3]  # (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1 in floating point


def _program() -> Predict:
    return Predict("q -> a", lm=FakeLM([{"a": "x"}] * 10))


def _dev() -> list[Example]:
    return [Example(q=str(i), a="x").with_inputs("q") for i in range(len(SCORES))]


def _reverse_finishing(example: Any, prediction: Any, trace: Any = None) -> float:
    i = int(example.q)
    time.sleep((len(SCORES) - i) * 0.1)  # the last row finishes first
    return SCORES[i]


def test_threaded_evaluate_scores_exactly_like_one_thread() -> None:
    one = evaluate(_program(), _dev(), _reverse_finishing, progress=False, num_threads=1)
    many = evaluate(_program(), _dev(), _reverse_finishing, progress=False, num_threads=3)
    assert many.score == one.score
    assert many.scores == one.scores == SCORES


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"score": math.nan}])
def test_outcome_refuses_a_non_finite_score(value: Any) -> None:
    with pytest.raises(MetricError, match="finite"):
        outcome(value)


def test_a_nan_metric_fails_its_row_instead_of_poisoning_the_score() -> None:
    result = evaluate(_program(), _dev(), lambda e, p, t=None: math.nan, progress=False, max_errors=None)
    assert result.errors == len(SCORES)
    assert result.score == 0.0
    assert all("finite" in (r.error or "") for r in result.rows)


@pytest.mark.parametrize(
    "dist",
    [
        {"a": math.nan, "b": 0.5},
        {"a": -0.5, "b": 1.5},
        {"a": math.inf},
        {"a": None, "b": 1.0},
        {"a": "0.5", "b": 0.5},
        {"a": 0.6},  # a partial distribution: the rest is missing
        {"a": 2.0, "b": 3.0},  # logits, not probabilities
    ],
)
@pytest.mark.parametrize("fn", [log_loss, brier_score, expected_calibration_error])
def test_calibration_metrics_refuse_what_is_not_a_distribution(fn: Any, dist: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="row 0"):
        fn(["a"], [dist])


@pytest.mark.parametrize("fn", [log_loss, brier_score, expected_calibration_error])
def test_calibration_metrics_accept_certain_and_rounded_distributions(fn: Any) -> None:
    assert math.isfinite(fn(["a", "b"], [{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}]))
    assert math.isfinite(fn(["a"], [{"a": 0.33, "b": 0.33, "c": 0.33}]))
    assert math.isfinite(fn(["z"], [{"a": 1.0}]))  # the gold label is not named: it has 0


@pytest.mark.parametrize("failure_score", [math.nan, math.inf, "0"])
def test_a_non_finite_failure_score_is_refused_before_any_row_runs(failure_score: Any) -> None:
    lm = FakeLM([{"a": "x"}] * 10)
    with pytest.raises(ConfigError, match="failure_score"):
        evaluate(
            Predict("q -> a", lm=lm), _dev(), lambda e, p, t=None: 1 / 0, progress=False, failure_score=failure_score
        )
    assert lm.requests == []
