from __future__ import annotations

import enum
from typing import Literal, Optional

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oobleck import InputField, OutputField, Signature, SignatureError
from oobleck.signature import ensure_signature


def test_string_with_types_and_descriptions():
    sig = Signature("context: list[str] = 'passages', question -> answer: int = 'the number'")
    assert list(sig.input_fields) == ["context", "question"]
    assert sig["context"].type == list[str]
    assert sig["context"].desc == "passages"
    assert sig["answer"].type is int
    assert sig["answer"].desc == "the number"
    assert sig.instructions == "Given the fields `context`, `question`, produce the fields `answer`."


def test_literal_optional_union():
    sig = Signature("text -> label: Literal['pos', 'neg'], score: Optional[float], extra: int | None")
    assert sig["label"].type == Literal["pos", "neg"]
    assert sig["score"].type == Optional[float]
    assert sig["extra"].type == Optional[int]


def test_arrow_inside_description_is_not_a_separator():
    sig = Signature("a: str = 'x -> y' -> b")
    assert sig["a"].desc == "x -> y"
    assert list(sig.output_fields) == ["b"]


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("question answer", "exactly one '->'"),
        ("a -> b -> c", "exactly one '->'"),
        ("a b -> c", "cannot read the input"),
        ("a, ,b -> c", "cannot read the input"),
        ("a -> ", "at least one output"),
        ("a, a -> b", "appears twice"),
        ("a -> b: Frobnicate", "unknown type 'Frobnicate'"),
        ("a -> b: str = 3", "only a quoted description"),
        ("a -> b: Literal[x]", "Literal[...] takes only"),
        ("a -> b: __import__('os')", "cannot read the type"),
    ],
)
def test_malformed_strings_give_clear_errors(spec, fragment):
    with pytest.raises(SignatureError, match=None) as info:
        Signature(spec)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


class Answer(pydantic.BaseModel):
    text: str
    confidence: float


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class QA(Signature):
    """Answer the question briefly."""

    question: str = InputField(desc="a trivia question")
    answer: Answer = OutputField(desc="structured answer")
    color: Color = OutputField()


def test_class_signature():
    sig = ensure_signature(QA)
    assert sig.instructions == "Answer the question briefly."
    assert sig.name == "QA"
    assert sig["question"].desc == "a trivia question"
    assert sig["answer"].type is Answer
    assert list(sig.output_fields) == ["answer", "color"]


def test_class_signature_needs_field_markers():
    with pytest.raises(SignatureError, match="InputField"):

        class Bad(Signature):
            question: str


def test_custom_types_in_strings():
    sig = Signature("q -> a: Answer", types={"Answer": Answer})
    assert sig["a"].type is Answer


def test_immutable_copies():
    sig = Signature("q -> a")
    other = sig.with_instructions("Be brief.")
    assert sig.instructions != "Be brief." and other.instructions == "Be brief."
    appended = sig.append("why", "output", desc="reason")
    assert list(appended.output_fields) == ["a", "why"] and list(sig.output_fields) == ["a"]
    assert list(sig.prepend("reasoning", "output").output_fields) == ["reasoning", "a"]
    assert "a" not in sig.append("b", "output").delete("a").output_fields
    assert sig.with_updated_field("a", type=int)["a"].type is int
    with pytest.raises(AttributeError):
        sig.instructions = "x"  # type: ignore[misc]


def test_dict_round_trip_without_the_user_class():
    sig = ensure_signature(QA)
    data = sig.to_dict()
    rebuilt = Signature.from_dict(data)
    assert rebuilt.instructions == sig.instructions
    # Without the classes, the types are rebuilt from JSON schema and validate the same data.
    answer_type = rebuilt["answer"].type
    value = pydantic.TypeAdapter(answer_type).validate_python({"text": "x", "confidence": 0.5})
    assert value.text == "x"
    with pytest.raises(pydantic.ValidationError):
        pydantic.TypeAdapter(answer_type).validate_python({"text": "x"})
    assert pydantic.TypeAdapter(rebuilt["color"].type).validate_python("red") == "red"
    # With the classes, the exact types come back.
    assert Signature.from_dict(data, types={"Answer": Answer, "Color": Color})["answer"].type is Answer


# ---- property: str(sig) parses back to an equal signature ----

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: (
        s
        not in {
            "None",
            "def",
            "if",
            "in",
            "is",
            "or",
            "and",
            "not",
            "for",
            "as",
            "del",
            "try",
            "from",
            "with",
            "pass",
            "else",
            "elif",
            "while",
            "class",
            "global",
            "lambda",
            "raise",
            "return",
            "yield",
            "import",
            "assert",
            "break",
            "except",
            "finally",
            "continue",
            "nonlocal",
            "async",
            "await",
        }
    )
)
labels = st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6),
    min_size=1,
    max_size=3,
    unique=True,
)
base_types = st.sampled_from([str, int, float, bool, list[str], dict[str, int], Optional[int], list[list[int]]])
types = st.one_of(base_types, labels.map(lambda ls: Literal[tuple(ls)]))
descs = st.text(max_size=20)


@given(st.lists(st.tuples(names, types, descs), min_size=2, max_size=6, unique_by=lambda t: t[0]), st.integers(1, 5))
def test_str_round_trip(fields, n_inputs):
    n_inputs = min(n_inputs, len(fields) - 1)

    def side(items):
        out = []
        for name, tp, desc in items:
            text = name
            from oobleck._types import type_to_str

            if tp is not str or desc:
                text += f": {type_to_str(tp)}"
            if desc:
                text += f" = {desc!r}"
            out.append(text)
        return ", ".join(out)

    spec = f"{side(fields[:n_inputs])} -> {side(fields[n_inputs:])}"
    sig = Signature(spec)
    assert Signature(str(sig)) == sig
    assert [f.name for f in sig.fields] == [f[0] for f in fields]


def test_label_order_is_part_of_a_signature_and_of_everything_cached_for_it():
    # Python says Literal["a", "b"] == Literal["b", "a"]; the order is shown to the LM, so
    # whatever was rendered first must not decide how the other is rendered.
    from oobleck import ChatAdapter
    from oobleck.adapters.json import output_schema
    from oobleck.label_scoring import scoring_plan

    ab, ba = Signature("q -> label: Literal['a', 'b']"), Signature("q -> label: Literal['b', 'a']")
    assert ab != ba and ab == Signature("q -> label: Literal['a', 'b']")
    adapter = ChatAdapter()
    assert "one of: a, b" in adapter.system_message(ab).content
    assert "one of: b, a" in adapter.system_message(ba).content
    assert output_schema(ab)["properties"]["label"]["enum"] == ["a", "b"]
    assert output_schema(ba)["properties"]["label"]["enum"] == ["b", "a"]
    assert scoring_plan(ab).labels == (("label", ("a", "b")),)  # type: ignore[union-attr]
    assert scoring_plan(ba).labels == (("label", ("b", "a")),)  # type: ignore[union-attr]
