"""Streaming multi-step programs: ReAct's steps and a custom module, tagged and in call order."""

from __future__ import annotations

import asyncio
from typing import Any

from react_helpers import act, calculate, finish, search

from oobleck import FakeLM, Module, Predict, Prediction, ReAct, StreamChunk


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


def test_react_streams_each_step_then_the_answer():
    script = [act("search", "look it up", query="tower"), finish("that is all"), {"answer": "330 metres"}]
    agent = ReAct("question -> answer", tools=[search, calculate], lm=FakeLM(script, stream_chunk=3))
    chunks, pred = split(list(agent.stream(question="How tall is the tower?")))
    assert runs(chunks) == [
        ("react", "next_thought"),
        ("react", "next_action"),
        ("react", "next_thought"),
        ("react", "next_action"),
        ("extract", "answer"),
    ]
    thoughts = [c.text for c in chunks if c.field == "next_thought"]
    assert "".join(thoughts) == "look it upthat is all"
    assert "".join(c.text for c in chunks if c.predictor == "extract") == "330 metres" == pred.answer
    plain = ReAct("question -> answer", tools=[search, calculate], lm=FakeLM(script))(question="How tall is the tower?")
    assert pred.answer == plain.answer and [s["tool"] for s in pred.trajectory] == [s["tool"] for s in plain.trajectory]


def test_astream_of_a_module_with_a_sync_forward():
    class TwoSteps(Module):
        def __init__(self) -> None:
            self.draft = Predict("topic -> draft")
            self.polish = Predict("draft -> text")

        def forward(self, topic: str) -> Prediction:  # no aforward: it runs in a worker thread
            return self.polish(draft=self.draft(topic=topic).draft)

    async def collect() -> list[Any]:
        program = TwoSteps().set_lm(FakeLM([{"draft": "rough words"}, {"text": "fine words"}], stream_chunk=2))
        return [item async for item in program.astream(topic="t")]

    chunks, pred = split(asyncio.run(collect()))
    assert runs(chunks) == [("draft", "draft"), ("polish", "text")]
    assert pred.text == "fine words"
