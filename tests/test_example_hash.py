"""Examples that are equal hash equal, so a set or dict of them deduplicates."""

from __future__ import annotations

from typing import Any

import pytest

from oobleck import Example, Prediction


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"meta": {"a": 1, "b": 2}}, {"meta": {"b": 2, "a": 1}}),
        ({"n": 1}, {"n": 1.0}),
        ({"tags": {"x", "y"}}, {"tags": frozenset({"y", "x"})}),
        ({"rows": [{"a": 1, "b": 2}]}, {"rows": [{"b": 2, "a": 1}]}),
    ],
)
def test_equal_examples_hash_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    left, right = Example(q="x", **a), Example(q="x", **b)
    assert left == right
    assert hash(left) == hash(right)
    assert len({left, right}) == 1


def test_different_examples_stay_apart_in_a_set() -> None:
    rows = {Example(q="x", a="1"), Example(q="x", a="2"), Example(q="y", a="1"), Prediction(a="1")}
    assert len(rows) == 4
