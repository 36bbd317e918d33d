"""Streaming MultiHop: each hop's query writer, then the answer, tagged and in call order."""

from __future__ import annotations

from typing import Any

from _corpus import corpus

from oobleck import FakeLM, StreamChunk
from oobleck.modules.multihop import MultiHop
from oobleck.retrieve import BM25Index


def split(items: list[Any]) -> tuple[list[StreamChunk], Any]:
    *chunks, last = items
    assert all(isinstance(c, StreamChunk) for c in chunks)
    return chunks, last


def runs(chunks: list[StreamChunk]) -> list[tuple[str, str]]:
    """(predictor, field) of each run of consecutive chunks."""
    out: list[tuple[str, str]] = []
    for c in chunks:
        if not out or out[-1] != (c.predictor, c.field):
            out.append((c.predictor, c.field))
    return out


def test_multihop_streams_each_query_writer_then_the_answer():
    index = BM25Index(corpus(), show_progress=False)
    script = [{"query": "Ada Lovelace"}, {"query": "London"}, {"answer": "London, on the Thames"}]
    program = MultiHop(index, hops=2, k=1, search_question=False, query_with_question=False, lm=FakeLM(script))
    chunks, pred = split(list(program.stream(question="Where was Ada Lovelace born?")))
    assert runs(chunks) == [
        ("generate_query[0]", "query"),
        ("generate_query[1]", "query"),
        ("generate_answer", "answer"),
    ]
    assert "".join(c.text for c in chunks if c.predictor == "generate_answer") == pred.answer
    assert pred.queries == ["Ada Lovelace", "London"]
