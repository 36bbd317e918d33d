"""Streaming on the real embedded model (SmolLM2 in-process through llama.cpp)."""

from __future__ import annotations

from typing import Any

import pytest

from oobleck import ChainOfThought, LMContextLengthError, Predict, StreamChunk
from oobleck.lm.types import usage_dict

pytestmark = pytest.mark.slow


def split(items: list[Any]) -> tuple[list[StreamChunk], Any]:
    *chunks, last = items
    assert all(isinstance(c, StreamChunk) for c in chunks)
    return chunks, last


def test_chain_of_thought_streams_its_fields_as_decoded(local_lm):
    # The default adapter here: a JSON answer constrained by a grammar, read as it arrives.
    # (The field-marker format streams the same way on FakeLM, tests/test_streaming.py; this
    # 135M model does not keep to its markers for this question.)
    cot = ChainOfThought("question -> answer", lm=local_lm)
    question = "What is the capital of France?"
    chunks, pred = split(list(cot.stream(question=question)))
    reasoning = [c.text for c in chunks if c.field == "reasoning"]
    assert len(reasoning) > 3  # token by token, not whole
    fields = [c.field for c in chunks]
    assert fields == sorted(fields, key=["reasoning", "answer"].index)  # reasoning, then answer
    assert {c.predictor for c in chunks} == {"predict"}
    assert "".join(reasoning) == pred.reasoning
    assert "".join(c.text for c in chunks if c.field == "answer") == pred.answer
    plain = cot(question=question)
    assert pred == plain and usage_dict(pred.usage) == usage_dict(plain.usage)


def test_stopping_early_stops_decoding_and_the_model_stays_usable(local_lm):
    qa = Predict("topic -> essay", lm=local_lm, max_tokens=96)
    stream = qa.stream(topic="the sea")
    first = next(stream)
    assert isinstance(first, StreamChunk)
    stream.close()
    assert local_lm._inflight == 0  # the call ended: no slot left decoding for nobody
    assert isinstance(qa(topic="the sea").essay, str)


def test_a_prompt_too_long_for_the_context_is_the_same_error_streamed(local_lm):
    qa = Predict("text -> summary", lm=local_lm)
    with pytest.raises(LMContextLengthError):
        list(qa.stream(text="word " * 5000))
