"""Property tests on generated LM answers: each parses or raises ParseError, nothing else.

Answers are random text, JSON of random shapes, nesting thousands deep, huge numbers, NaN and
Infinity, and invalid Unicode escapes, alone or inside the layout each adapter asks for (chat
field markers, a JSON object, ``Name: value`` lines). Every built-in format parses them, directly
and through a Predict call on a FakeLM.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oobleck import FakeLM, ParseError, Predict, Prediction, Signature, _types
from oobleck.adapters.template import FORMATS, label

PROPERTY = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SIGNATURES = [
    Signature("question -> answer"),
    Signature("question -> answer: int"),
    Signature("text -> label: Literal['positive', 'negative'], confidence: float"),
    Signature("question -> items: list[dict[str, Any]], done: bool"),
    Signature("question -> data: Any, note: str | None"),
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["positive", "negative", "3", "1.5", "true"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    if kind == "object":
        return '{"a": ' * depth + "1" + "}" * depth
    if kind == "open":
        return "[{" * depth
    return "[" * depth + "]" * (depth // 2)


def _dumps(value: Any) -> str:
    return json.dumps(value)  # NaN and Infinity as Python writes them (not strict JSON)


atoms = st.one_of(
    st.text(max_size=60),
    json_values.map(_dumps),
    st.builds(
        _nested,
        st.sampled_from([1, 99, 100, 101, 999, 1000, 3000]) | st.integers(0, 3000),
        st.sampled_from(["list", "object", "open", "unbalanced"]),
    ),
    st.integers(300, 6000).map(lambda n: "9" * n),
    st.sampled_from(["NaN", "-Infinity", "Infinity", "1e999", "-1e400", "1" + "0" * 5000 + ".5"]),
    st.sampled_from(['"\\ud800"', '"\\udfff\\ud800"', '"\\u12"', '"\\uZZZZ"', '"\\x41"', '"\\', "\\u0000"]),
)


def _in_layout(sig: Signature, values: list[str], layout: str) -> str:
    names = list(sig.output_fields)
    pairs = list(zip(names, values + [""] * len(names)))
    if layout == "markers":
        body = "\n\n".join(f"[[ ## {n} ## ]]\n{v}" for n, v in pairs)
        return body + "\n\n[[ ## completed ## ]]"
    if layout == "object":
        return "{" + ", ".join(f"{json.dumps(n)}: {v}" for n, v in pairs) + "}"
    return "\n".join(f"{label(n)}: {v}" for n, v in pairs)


answers = st.one_of(
    atoms,
    st.tuples(
        st.integers(0, len(SIGNATURES) - 1),
        st.lists(atoms, max_size=3),
        st.sampled_from(["markers", "object", "lines"]),
    ).map(lambda t: _in_layout(SIGNATURES[t[0]], t[1], t[2])),
)


def _check_values(values: dict[str, Any], sig: Signature) -> None:
    assert set(values) == set(sig.output_fields)
    for value in values.values():
        # What parsed can be written anywhere: JSON text that encodes as UTF-8.
        json.dumps(_types.to_jsonable(value), ensure_ascii=False).encode("utf-8")


@PROPERTY
@given(text=answers)
def test_every_adapter_parses_an_answer_or_raises_parse_error_keeping_the_raw_text(text: str) -> None:
    for sig, (name, adapter) in itertools.product(SIGNATURES, FORMATS.items()):
        try:
            values = adapter.parse(sig, text)
        except ParseError as exc:
            assert exc.raw == text, name
            assert exc.signature == sig, name
        else:
            _check_values(values, sig)


@PROPERTY
@given(text=answers, which=st.integers(0, len(SIGNATURES) - 1))
def test_a_predict_call_on_any_answer_returns_a_prediction_or_raises_parse_error(text: str, which: int) -> None:
    sig = SIGNATURES[which]
    inputs = {name: "x" for name in sig.input_fields}
    for name in ("chat", "json", "one_line", "prefix"):
        program = Predict(sig, lm=FakeLM([text], cycle=True), adapter=FORMATS[name])
        try:
            pred = program(**inputs)
        except ParseError as exc:
            assert exc.raw == text, name
        else:
            assert isinstance(pred, Prediction)
            _check_values(dict(pred), sig)


def test_answers_nested_a_thousand_deep_raise_parse_error_in_every_adapter() -> None:
    deep = "[" * 1000 + "]" * 1000
    layouts = {
        "chat": f"[[ ## data ## ]]\n{deep}\n\n[[ ## note ## ]]\nnull\n\n[[ ## completed ## ]]",
        "json": '{"data": ' + deep + ', "note": null}',
        "lines": f"Data: {deep}\nNote: null",
    }
    sig = Signature("question -> data: list, note: str | None")
    for name, adapter in FORMATS.items():
        for text in layouts.values():
            try:
                adapter.parse(sig, text)
            except ParseError as exc:
                assert exc.raw == text
            else:
                raise AssertionError(f"{name} read an answer nested 1000 deep")
    # Within the bound, nesting still parses.
    shallow = '{"data": ' + "[" * 50 + "]" * 50 + ', "note": null}'
    assert FORMATS["json"].parse(sig, shallow)["data"] == json.loads("[" * 50 + "]" * 50)


def test_invalid_unicode_escapes_raise_parse_error_saying_so() -> None:
    sig = Signature("question -> answer: Any")
    text = '{"answer": "\\ud800"}'
    try:
        FORMATS["json"].parse(sig, text)
    except ParseError as exc:
        assert "Unicode" in exc.reason and exc.raw == text
    else:
        raise AssertionError("a lone surrogate was accepted")
