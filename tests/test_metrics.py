"""Metrics: normalisation, field selection, F1 properties, the metric() wrapper."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oobleck import ConfigError, Example, MetricError, Prediction
from oobleck.metrics import (
    F1,
    ExactMatch,
    Metric,
    PassageMatch,
    exact_match,
    f1,
    metric,
    metric_name,
    normalize_text,
    passage_match,
)

QA = Example(question="Who sang Help?", answer="The Beatles").with_inputs("question")


def test_normalize_text_squad_style() -> None:
    assert normalize_text("  The  Beatles!! ") == "beatles"
    assert normalize_text("An apple, a day.") == "apple day"
    assert normalize_text(42) == "42"


def test_exact_match_uses_first_label_field_and_normalises() -> None:
    assert exact_match(QA, Prediction(answer="beatles")) is True
    assert exact_match(QA, Prediction(answer="the rolling stones")) is False


def test_exact_match_named_field_and_list_of_golds() -> None:
    ex = Example(q="x", label="pos", alias=["yes", "Yep"]).with_inputs("q")
    assert ExactMatch(field="alias")(ex, Prediction(alias="yep")) is True
    assert ExactMatch(field="label", normalize=False)(ex, Prediction(label="Pos")) is False


def test_exact_match_compares_non_strings() -> None:
    ex = Example(q="2+2", a=4).with_inputs("q")
    assert exact_match(ex, Prediction(a=4))
    assert not exact_match(ex, Prediction(a=5))


def test_missing_field_is_a_clear_error() -> None:
    with pytest.raises(MetricError, match="prediction has no field 'answer'"):
        exact_match(QA, Prediction(reply="x"))
    with pytest.raises(ConfigError, match="no label field"):
        exact_match(Example(q="x").with_inputs("q"), Prediction(q="x"))


def test_f1_values() -> None:
    assert f1(QA, Prediction(answer="the beatles")) == 1.0
    assert f1(QA, Prediction(answer="nobody")) == 0.0
    assert F1(field="a")(Example(a="red apple"), Prediction(a="apple")) == pytest.approx(2 / 3)


def test_passage_match() -> None:
    pred = Prediction(context=["Help! is a 1965 album.", "It was recorded by the Beatles."])
    assert passage_match(QA, pred)
    assert not passage_match(QA, Prediction(context="Nothing here"))
    assert PassageMatch(passages_field="docs")(QA, Prediction(docs=["the beatles"]))
    with pytest.raises(MetricError, match="passages_field"):
        passage_match(QA, Prediction(answer="x"))


def test_metric_wrapper_two_and_three_arguments() -> None:
    seen = []

    @metric
    def two(example, prediction):  # type: ignore[no-untyped-def]
        return example.answer == prediction.answer

    @metric(name="strict")
    def three(example, prediction, trace):  # type: ignore[no-untyped-def]
        seen.append(trace)
        return 0.5

    assert two(QA, Prediction(answer="The Beatles"), ["ignored"]) is True
    assert three(QA, Prediction(answer="x"), ["t"]) == 0.5 and seen == [["t"]]
    assert metric_name(two) == "two" and metric_name(three) == "strict"
    assert metric_name(exact_match) == "exact_match"
    assert metric_name(ExactMatch(field="label")) == "exact_match[label]"
    assert isinstance(two, Metric) and isinstance(exact_match, Metric)


words = st.lists(st.sampled_from(["a", "cat", "dog", "sat", "mat", "red", "on"]), max_size=8).map(" ".join)


@given(words, words)
def test_f1_is_symmetric_and_bounded(a: str, b: str) -> None:
    x = f1(Example(ans=a), Prediction(ans=b))
    y = f1(Example(ans=b), Prediction(ans=a))
    assert 0.0 <= x <= 1.0
    assert x == pytest.approx(y)


@given(words)
def test_exact_match_implies_full_f1(a: str) -> None:
    gold, pred = Example(ans=a), Prediction(ans=a.upper() + "!")
    assert exact_match(gold, pred)
    assert f1(gold, pred) == 1.0
