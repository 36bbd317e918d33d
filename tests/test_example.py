"""Example serialisation: the one JSON form of a row (checkpoints, data hashes, module state)."""

from __future__ import annotations

import json

from oobleck import Example
from oobleck.example import from_data, to_data


def test_a_row_round_trips_through_json_with_its_inputs():
    row = Example(question="2+2?", answer=4, tags=("a", "b")).with_inputs("question")
    data = json.loads(json.dumps(to_data(row)))
    assert data == {"fields": {"question": "2+2?", "answer": 4, "tags": ["a", "b"]}, "inputs": ["question"]}
    back = from_data(data)
    assert back.input_keys == ("question",) and back.inputs() == {"question": "2+2?"} and back["answer"] == 4


def test_unmarked_inputs_stay_unmarked():
    assert from_data(to_data(Example(a=1))).input_keys is None
    assert from_data(to_data({"a": 1})).input_keys is None
    assert from_data(to_data(Example(a=1).with_inputs())).input_keys == ()
