"""program.stream / astream on FakeLM: order, the final prediction, early stop, errors."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import oobleck
from oobleck import (
    Cache,
    CachedLM,
    ChainOfThought,
    FakeLM,
    JSONAdapter,
    LMConnectionError,
    Module,
    Predict,
    Prediction,
    StreamChunk,
    TemplateAdapter,
)
from oobleck._budget import Budget
from oobleck.lm.base import BaseLM
from oobleck.lm.types import Choice, LMRequest, LMResponse, Usage, usage_dict


def split(items: list[Any]) -> tuple[list[StreamChunk], Any]:
    *chunks, last = items
    assert all(isinstance(c, StreamChunk) for c in chunks)
    return chunks, last


def joined(chunks: list[StreamChunk]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for c in chunks:
        key = (c.predictor, c.field)
        out[key] = c.text if c.replace else out.get(key, "") + c.text
    return out


def test_stream_chunk_is_exported_and_frozen():
    chunk = StreamChunk("self", "answer", "Pa")
    assert oobleck.StreamChunk is StreamChunk
    with pytest.raises(AttributeError):
        chunk.text = "x"  # type: ignore[misc]


def test_chain_of_thought_streams_reasoning_then_answer_and_ends_with_the_prediction():
    script = [{"reasoning": "Two and two make four.", "answer": 4}]
    cot = ChainOfThought("question -> answer: int", lm=FakeLM(script, stream_chunk=3))
    chunks, pred = split(list(cot.stream(question="2+2?")))
    assert len(chunks) > 5  # streamed in pieces, not whole
    fields = [c.field for c in chunks]
    first_answer = fields.index("answer")
    assert set(fields[:first_answer]) == {"reasoning"} and set(fields[first_answer:]) == {"answer"}
    assert {c.predictor for c in chunks} == {"predict"}
    assert joined(chunks) == {("predict", "reasoning"): "Two and two make four.", ("predict", "answer"): "4"}
    plain = ChainOfThought("question -> answer: int", lm=FakeLM(script))(question="2+2?")
    assert isinstance(pred, Prediction) and pred == plain and usage_dict(pred.usage) == usage_dict(plain.usage)


def test_multi_predictor_program_tags_chunks_in_call_order():
    class TwoSteps(Module):
        def __init__(self) -> None:
            self.draft = Predict("topic -> draft")
            self.polish = Predict("draft -> text")

        def forward(self, topic: str) -> Prediction:
            return self.polish(draft=self.draft(topic=topic).draft)

    lm = FakeLM([{"draft": "rough words"}, {"text": "fine words"}], stream_chunk=2)
    program = TwoSteps().set_lm(lm)
    chunks, pred = split(list(program.stream(topic="t")))
    names = [c.predictor for c in chunks]
    assert names == sorted(names)  # every draft chunk before every polish chunk
    assert joined(chunks) == {("draft", "draft"): "rough words", ("polish", "text"): "fine words"}
    assert pred.text == "fine words"


def test_json_adapter_streams_string_values_and_gives_numbers_whole():
    lm = FakeLM([{"answer": "Paris is the capital", "confidence": 0.9}], stream_chunk=1)
    qa = Predict("question -> answer, confidence: float", lm=lm, adapter=JSONAdapter())
    chunks, pred = split(list(qa.stream(question="q")))
    answer = [c.text for c in chunks if c.field == "answer"]
    assert len(answer) > 5 and "".join(answer) == "Paris is the capital"
    assert [c.text for c in chunks if c.field == "confidence"] == ["0.9"]
    assert pred.confidence == 0.9


def test_template_prefix_lines_arrive_whole_once_parsed():
    lm = FakeLM(["Answer: Paris"], stream_chunk=1)
    qa = Predict("question -> answer", lm=lm, adapter=TemplateAdapter(output="prefix"))
    chunks, pred = split(list(qa.stream(question="q")))
    assert [(c.field, c.text) for c in chunks] == [("answer", "Paris")]
    assert pred.answer == "Paris"


def test_marker_text_is_held_back_until_it_is_known_not_to_be_a_marker():
    # A value quoting a marker is escaped by the writer; the stream gives the unescaped value.
    value = "see [[ ## other ## ]] here"
    lm = FakeLM([{"answer": value, "note": "n"}], stream_chunk=1)
    chunks, pred = split(list(Predict("q -> answer, note", lm=lm).stream(q="x")))
    assert joined(chunks)[("self", "answer")] == value == pred.answer
    assert all("\\" not in c.text for c in chunks)


def test_score_mode_label_comes_as_one_chunk():
    lm = FakeLM(scores={"[[ ## label ## ]]\npositive": -0.1, "[[ ## label ## ]]\nnegative": -2.5})
    clf = Predict("text -> label: Literal['positive', 'negative']", lm=lm, mode="score", calibration=None)
    chunks, pred = split(list(clf.stream(text="great")))
    assert chunks == [StreamChunk("self", "label", "positive")]
    assert pred.label == "positive"


class Whole(BaseLM):
    """A backend that cannot stream: answers with one complete response."""

    def complete(self, request: LMRequest) -> LMResponse:
        return LMResponse(
            choices=(Choice(text="[[ ## answer ## ]]\nParis", finish_reason="stop"),), usage=Usage(calls=1)
        )


def test_a_backend_without_streaming_gives_each_field_once_at_the_end():
    chunks, pred = split(list(Predict("question -> answer", lm=Whole()).stream(question="q")))
    assert chunks == [StreamChunk("self", "answer", "Paris")] and pred.answer == "Paris"


def test_a_cache_hit_streams_whole_and_the_same_entry_serves_both():
    cached = CachedLM(FakeLM([{"answer": "Paris"}], stream_chunk=1), cache=Cache(None))
    qa = Predict("question -> answer", lm=cached)
    chunks, first = split(list(qa.stream(question="q")))
    assert len(chunks) == 5  # streamed from the backend
    plain = qa(question="q")  # the same request: a hit on what the stream stored
    assert plain.usage.cache_hits == 1 and plain.answer == first.answer
    chunks, again = split(list(qa.stream(question="q")))
    assert chunks == [StreamChunk("self", "answer", "Paris")] and again.usage.cache_hits == 1


def test_budget_counts_a_streamed_call_as_a_plain_one():
    def run(streamed: bool) -> Any:
        budget = Budget(max_lm_calls=5)
        qa = Predict("question -> answer", lm=FakeLM([{"answer": "Paris"}]))
        with budget.activate():
            result = split(list(qa.stream(question="q")))[1] if streamed else qa(question="q")
        return usage_dict(budget.spent), budget.held, usage_dict(result.usage)

    assert run(True) == run(False)


def test_stopping_early_cuts_the_call_and_starts_no_other():
    lm = FakeLM([{"reasoning": "a long line of thought " * 5, "answer": "x"}, {"answer": "never"}], stream_chunk=2)

    class Twice(Module):
        def __init__(self) -> None:
            self.first = ChainOfThought("q -> answer")
            self.second = Predict("q -> answer")

        def forward(self, q: str) -> Prediction:
            self.first(q=q)
            return self.second(q=q)

    budget = Budget(max_lm_calls=10)
    program = Twice().set_lm(lm)
    with budget.activate():
        stream = program.stream(q="go")
        got = [next(stream) for _ in range(3)]
        stream.close()  # returns once the worker has stopped
    assert all(c.field == "reasoning" for c in got)
    assert len(lm.requests) == 1  # the second predictor never called
    assert budget.held == (0, 0)  # the cut call's reservation settled (counted as sent)
    assert budget.spent.calls == 1


def test_breaking_out_of_a_for_loop_stops_the_stream_too():
    lm = FakeLM([{"answer": "word " * 50}], stream_chunk=1, cycle=True)
    qa = Predict("q -> answer", lm=lm)
    seen = 0
    for _ in qa.stream(q="x"):
        seen += 1
        if seen == 2:
            break
    assert seen == 2
    assert qa(q="x").answer.strip() == ("word " * 50).strip()  # the script moved on: the LM is usable


def test_a_dropped_stream_raises_after_its_chunks_and_caches_nothing():
    cache = Cache(None)
    lm = CachedLM(FakeLM([{"answer": "Paris is lovely"}], drop_stream_after=24, stream_chunk=4), cache=cache)
    items: list[Any] = []
    with pytest.raises(LMConnectionError, match="dropped the connection"):
        for item in Predict("question -> answer", lm=lm).stream(question="q"):
            items.append(item)
    assert items and all(isinstance(i, StreamChunk) for i in items)
    assert len(cache) == 0


def test_errors_before_any_text_raise_from_the_stream():
    with pytest.raises(oobleck.ConfigError, match="no LM"):
        list(Predict("q -> a").stream(q="x"))
    with pytest.raises(oobleck.InputError):
        Predict("q -> a", lm=FakeLM()).stream(self="x")


def test_stream_runs_in_the_callers_context():
    with oobleck.context(lm=FakeLM([{"answer": "ctx"}])):
        *_, pred = Predict("q -> answer").stream(q="x")
    assert pred.answer == "ctx"


def test_astream_yields_the_same_items_as_stream():
    script = [{"reasoning": "Because.", "answer": "yes"}]
    sync = list(ChainOfThought("q -> answer", lm=FakeLM(script, stream_chunk=2)).stream(q="x"))

    async def collect() -> list[Any]:
        cot = ChainOfThought("q -> answer", lm=FakeLM(script, stream_chunk=2))
        return [item async for item in cot.astream(q="x")]

    assert asyncio.run(collect()) == sync


def test_astream_stopped_early_settles_and_raises_errors():
    async def early() -> tuple[list[Any], tuple[int, int]]:
        budget = Budget(max_lm_calls=5)
        with budget.activate():
            qa = Predict("q -> answer", lm=FakeLM([{"answer": "word " * 40}], stream_chunk=1))
            got = []
            async with contextlib.aclosing(qa.astream(q="x")) as stream:
                async for item in stream:
                    got.append(item)
                    if len(got) == 2:
                        break
        return got, budget.held

    got, held = asyncio.run(early())
    assert len(got) == 2 and held == (0, 0)

    async def dropped() -> None:
        qa = Predict("q -> answer", lm=FakeLM([{"answer": "Paris is lovely"}], drop_stream_after=20))
        async for _ in qa.astream(q="x"):
            pass

    with pytest.raises(LMConnectionError):
        asyncio.run(dropped())


def test_fake_lm_checks_its_stream_settings():
    with pytest.raises(oobleck.ConfigError, match="stream_chunk"):
        FakeLM(stream_chunk=0)
    with pytest.raises(oobleck.ConfigError, match="drop_stream_after"):
        FakeLM(drop_stream_after=-1)


def test_a_parse_repair_retry_streams_the_fields_of_the_answer_that_parsed():
    # The first answer has no markers (nothing can be read from it as it comes); the repair does.
    lm = FakeLM(["I think it is four", {"reasoning": "two twos", "answer": 4}], stream_chunk=3)
    cot = ChainOfThought("question -> answer: int", lm=lm, max_retries=1)
    chunks, pred = split(list(cot.stream(question="2+2?")))
    assert joined(chunks) == {("predict", "reasoning"): "two twos", ("predict", "answer"): "4"}
    assert pred.answer == 4 and pred.usage.calls == 2 and pred.usage.retries == 1


def test_a_retry_that_rewrites_a_streamed_field_sends_a_replacing_chunk():
    # The first answer streams its reasoning, then fails to parse (answer is not an int).
    lm = FakeLM([{"reasoning": "first try", "answer": "many"}, {"reasoning": "two twos", "answer": 4}], stream_chunk=3)
    cot = ChainOfThought("question -> answer: int", lm=lm, max_retries=1)
    chunks, pred = split(list(cot.stream(question="2+2?")))
    reasoning = [c for c in chunks if c.field == "reasoning"]
    assert "".join(c.text for c in reasoning if not c.replace).startswith("first try")
    replaced = [c.text for c in reasoning if c.replace]  # the retry's first piece, then it extends again
    assert len(replaced) == 1 and "two twos".startswith(replaced[0])
    assert joined(chunks) == {("predict", "reasoning"): "two twos", ("predict", "answer"): "4"}
    assert pred.reasoning == "two twos" and pred.answer == 4


def test_a_traced_stream_records_the_call_like_a_plain_one():
    with oobleck.trace() as t:
        list(Predict("q -> answer", lm=FakeLM([{"answer": "a"}])).stream(q="x"))
    assert len(t.entries) == 1 and t.entries[0].outputs == {"answer": "a"}
