"""Render then parse recovers field values, for every adapter and every supported type."""

from __future__ import annotations

import enum
from typing import Literal, Optional

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oobleck import ChatAdapter, JSONAdapter, ParseError, Signature, _types
from oobleck.adapters.chat import escape, unescape
from oobleck.adapters.template import FORMATS

ADAPTERS = [ChatAdapter(), JSONAdapter()]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)
tricky = st.one_of(
    text,
    st.sampled_from(
        [
            "[[ ## answer ## ]]",
            "x\n[[ ## answer ## ]]\ny",
            "\\[[ ## a ## ]]",
            '{"a": 1}',
            "[[ ## completed ## ]]",
            "```json\n{}\n```",
            "émoji 🎉 \n\n line",
        ]
    ),
    st.lists(st.sampled_from(["[[ ## answer ## ]]", "\\", "\n", "text", "]]", "[[", "##", "{", "}"]), max_size=8).map(
        "".join
    ),
)


@given(tricky)
def test_escape_is_reversible(value):
    assert unescape(escape(value)) == value


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
@given(first=tricky, second=tricky)
@settings(max_examples=150)
def test_string_fields_round_trip(adapter, first, second):
    sig = Signature("question -> answer, notes")
    text_out = adapter.format_outputs(sig, {"answer": first, "notes": second})
    parsed = adapter.parse(sig, text_out)
    if adapter.name == "chat":  # the chat format strips surrounding whitespace by design
        assert parsed == {"answer": first.strip(), "notes": second.strip()}
    else:
        assert parsed == {"answer": first, "notes": second}


class Inner(pydantic.BaseModel):
    name: str
    tags: list[str]


class Outer(pydantic.BaseModel):
    inner: Inner
    score: float
    maybe: Optional[int] = None


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
TYPED = [
    (int, st.integers(-(10**12), 10**12)),
    (float, finite),
    (bool, st.booleans()),
    (Literal["positive", "negative", "neutral"], st.sampled_from(["positive", "negative", "neutral"])),
    (Mood, st.sampled_from(list(Mood))),
    (list[int], st.lists(st.integers(), max_size=5)),
    (list[str], st.lists(tricky, max_size=4)),
    (dict[str, int], st.dictionaries(text, st.integers(), max_size=4)),
    (Optional[int], st.one_of(st.none(), st.integers())),
    (
        Outer,
        st.builds(
            Outer,
            inner=st.builds(Inner, name=tricky, tags=st.lists(text, max_size=3)),
            score=finite,
            maybe=st.one_of(st.none(), st.integers()),
        ),
    ),
]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
@pytest.mark.parametrize("tp, values", TYPED, ids=lambda x: getattr(x, "__name__", str(x))[:20])
@given(data=st.data())
@settings(max_examples=40)
def test_typed_fields_round_trip(adapter, tp, values, data):
    value = data.draw(values)
    sig = (
        Signature("q -> out: T", types={"T": tp})
        if not isinstance(tp, type) or tp.__module__ != "builtins"
        else Signature(f"q -> out: {tp.__name__}")
    )
    parsed = adapter.parse(sig, adapter.format_outputs(sig, {"out": value}))
    assert parsed["out"] == value


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
def test_parse_error_keeps_raw_field_and_signature(adapter):
    sig = Signature("q -> answer: int")
    raw = '{"answer": "many"}' if adapter.name == "json" else "[[ ## answer ## ]]\nmany"
    with pytest.raises(ParseError) as info:
        adapter.parse(sig, raw)
    err = info.value
    assert err.raw == raw and err.field == "answer" and err.signature == sig
    assert "int" in str(err)


def test_chat_missing_field():
    sig = Signature("q -> a, b")
    with pytest.raises(ParseError) as info:
        ChatAdapter().parse(sig, "[[ ## a ## ]]\nfine")
    assert info.value.field == "b"


def test_json_garbage():
    with pytest.raises(ParseError) as info:
        JSONAdapter().parse(Signature("q -> a"), "I think the answer is 4")
    assert info.value.field is None and "JSON object" in str(info.value)


def test_chat_leniency_for_small_models():
    sig = Signature("text -> label: Literal['positive', 'negative']")
    adapter = ChatAdapter()
    assert adapter.parse(sig, "Positive.") == {"label": "positive"}
    assert adapter.parse(sig, "[[ ## label ## ]]\nThe review is negative") == {"label": "negative"}
    with pytest.raises(ParseError):  # both labels present: ambiguous, not guessed
        adapter.parse(sig, "[[ ## label ## ]]\npositive or negative")
    trec = Signature("question -> label: Literal['numeric', 'entity', 'location', 'description']")
    assert adapter.parse(trec, "[[ ## label ## ]]\nnumerical") == {"label": "numeric"}
    assert adapter.parse(trec, "[[ ## label ## ]]\nLoc.") == {"label": "location"}
    with pytest.raises(ParseError):  # a near miss of no label, or of two, is not guessed
        adapter.parse(trec, "[[ ## label ## ]]\nhuman being")


def test_json_adapter_requests_schema_only_where_supported():
    from oobleck.lm.base import Capabilities

    sig = Signature("q -> a: int")
    assert JSONAdapter().request_options(sig, Capabilities(json_schema=False)) == {}
    opts = JSONAdapter().request_options(sig, Capabilities(json_schema=True))
    assert opts["response_format"]["schema"]["properties"]["a"]["type"] == "integer"
    assert opts["response_format"]["schema"]["required"] == ["a"]


def test_demos_render_as_turns():
    sig = Signature("question -> answer")
    msgs = ChatAdapter().render(sig, demos=[{"question": "1+1", "answer": "2"}], inputs={"question": "2+2"})
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert "[[ ## answer ## ]]\n2" in msgs[2].content
    assert "2+2" in msgs[3].content


class OneOrText(enum.Enum):
    ONE = 1
    TEXT = "1"


class Truth(enum.Enum):
    WORD = "true"
    FLAG = True
    OTHER = "x"


#: labels that differ only in case, punctuation, quotes, spaces or JSON type from another label
CLOSE_LABELS = [
    Literal["A", "a"],
    Literal["yes", "yes!"],
    Literal['"a"', "a"],
    Literal["N/A", "n/a"],
    Literal["1", 1],
    Literal[True, "True"],
    Literal[True, "true"],
    Literal["null", None],
    Literal["", "a"],
    Literal["a\nb", "a"],
    OneOrText,
    Truth,
]


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("tp", CLOSE_LABELS, ids=repr)
def test_every_label_reads_back_as_itself_when_another_is_close(name, tp):
    # the lenient label match (case, quotes, punctuation) ran before the exact one, so the
    # label "a" was read as "A" and 1 as "1"; and an Enum wrote "1" and 1 alike
    adapter = FORMATS[name]
    sig = Signature("q -> out: T", types={"T": tp})
    written = {}
    for choice in _types.literal_choices(tp) or ():
        value = _types.validate(tp, choice)
        text = adapter.format_outputs(sig, {"out": value})
        parsed = adapter.parse(sig, text)["out"]
        assert parsed == value and type(parsed) is type(value), (text, parsed)
        written[text] = value
    assert len(written) == len(_types.literal_choices(tp) or ())
