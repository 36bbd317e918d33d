"""Reading fields from a partial answer: every prefix gives text that only grows, ending at parse's."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oobleck import ChatAdapter, JSONAdapter, Signature, TemplateAdapter

PROPERTY = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SIG = Signature("question -> reasoning, answer")
# Text that stresses the readers: markers and near-markers, backslashes, quotes, escapes,
# whitespace at the ends, characters outside the BMP.
tricky = st.lists(
    st.sampled_from(["a", " ", "\n", "[", "]", "#", "\\", '"', "é", "😀", "[[ ## ", " ## ]]", "[[ ## answer ## ]]"]),
    max_size=12,
).map("".join)


def grow(read, signature, text, step):
    """Feed prefixes of ``text`` ``step`` characters apart; check each field's text only grows."""
    sent: dict[str, str] = {}
    for end in [*range(0, len(text), step), len(text)]:
        for name, value in read(signature, text[:end], final=False).items():
            before = sent.get(name, "")
            assert value.startswith(before), (text[:end], name, before, value)
            sent[name] = value
    final = read(signature, text, final=True)
    for name, value in final.items():
        assert value.startswith(sent.get(name, "")), (name, sent.get(name), value)
    return sent, final


@PROPERTY
@given(reasoning=tricky, answer=tricky, step=st.integers(1, 7))
def test_chat_fields_grow_and_end_at_the_parsed_values(reasoning, answer, step):
    adapter = ChatAdapter()
    text = adapter.format_outputs(SIG, {"reasoning": reasoning, "answer": answer})
    _, final = grow(adapter.partial_fields, SIG, text, step)
    assert final == adapter.parse(SIG, text)


@PROPERTY
@given(reasoning=tricky, answer=tricky, step=st.integers(1, 7), spaced=st.booleans())
def test_json_fields_grow_and_end_at_the_parsed_values(reasoning, answer, step, spaced):
    adapter = JSONAdapter()
    text = adapter.format_outputs(SIG, {"reasoning": reasoning, "answer": answer})
    if spaced:
        text = text.replace(", ", " ,\n ")
    sent, final = grow(adapter.partial_fields, SIG, text, step)
    assert final == adapter.parse(SIG, text)
    assert sent == final  # string values stream to the end before the object closes


def test_chat_holds_back_what_may_still_be_a_marker():
    read = ChatAdapter().partial_fields
    assert read(SIG, "[[ ## reasoning ## ]]\nabc [[ ## ans", final=False) == {"reasoning": "abc"}
    assert read(SIG, "[[ ## reasoning ## ]]\nabc \\", final=False) == {"reasoning": "abc"}
    assert read(SIG, "[[ ## reasoning ## ]]\nabc [x", final=False) == {"reasoning": "abc [x"}
    assert read(SIG, "[[ ## reasoning ## ]]\nab\n\n[[ ## answer ## ]]\n4", final=False) == {
        "reasoning": "ab",
        "answer": "4",
    }
    one = Signature("q -> answer")
    assert read(one, "Paris", final=False) == {}  # a marker may still come
    assert read(one, "Paris", final=True) == {"answer": "Paris"}


def test_json_gives_other_values_whole_once_complete():
    read = JSONAdapter().partial_fields
    sig = Signature("q -> answer, score: float, tags: list[str]")
    assert read(sig, '{"score": 0.', final=False) == {}
    assert read(sig, '{"score": 0.75', final=False) == {}
    assert read(sig, '{"score": 0.75,', final=False) == {"score": "0.75"}
    assert read(sig, '{"score": 0.75', final=True) == {"score": "0.75"}
    assert read(sig, '{"tags": ["a", "b"], "answer": "x\\u00', final=False) == {"tags": '["a", "b"]', "answer": "x"}
    assert read(sig, '{"answer": "\\ud83d', final=False) == {"answer": ""}
    assert read(sig, '{"answer": "\\ud83d\\ude00!', final=False) == {"answer": "😀!"}
    assert read(sig, 'Sure: {"other": "skip", "answer": "y"}', final=False) == {"answer": "y"}


def test_template_json_streams_and_prefix_lines_do_not():
    assert TemplateAdapter().partial_fields(SIG, '{"answer": "Par', final=False) == {"answer": "Par"}
    assert TemplateAdapter(output="prefix").partial_fields(SIG, "Answer: Paris", final=True) == {}
