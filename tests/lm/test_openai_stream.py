"""OpenAILM streaming: server-sent events from a mock transport, and from the real local server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import openai
import pytest

from oobleck import (
    Cache,
    CachedLM,
    ChainOfThought,
    LMConnectionError,
    LMResponseError,
    OpenAILM,
    Predict,
    Prediction,
    StreamChunk,
)
from oobleck._budget import Budget
from oobleck.lm.types import usage_dict

try:
    import httpx2 as httpx
except ImportError:  # older SDKs use httpx itself
    import httpx  # type: ignore[no-redef]

# OpenAILM declares structured output, so its default adapter asks for a JSON answer.
ANSWER = '{"reasoning": "Two and two make four.", "answer": 4}'
LONG = '{"answer": "Paris is the capital of France, and a lovely city to walk in."}'
USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}


def events(
    text: str, *, size: int = 5, finish: str | None = "stop", usage: bool = True, done: bool = True
) -> list[bytes]:
    """The SSE lines an OpenAI-compatible server sends for ``text``, in pieces of ``size``."""

    def event(chunk: dict[str, Any]) -> bytes:
        return f"data: {json.dumps({'object': 'chat.completion.chunk', 'model': 'm', **chunk})}\n\n".encode()

    out = [event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    out += [
        event({"choices": [{"index": 0, "delta": {"content": text[i : i + size]}, "finish_reason": None}]})
        for i in range(0, len(text), size)
    ]
    if finish is not None:
        out.append(event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    if usage:
        out.append(event({"choices": [], "usage": USAGE}))
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def body(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": USAGE,
    }


class Lines(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent event by event; ``drop_after`` events, the connection drops."""

    def __init__(self, lines: list[bytes], drop_after: int | None = None) -> None:
        self.lines = lines
        self.drop_after = drop_after
        self.sent = 0
        self.closed = False

    def _next(self, i: int) -> bytes:
        if self.drop_after is not None and i >= self.drop_after:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
        self.sent += 1
        return self.lines[i]

    def __iter__(self):
        for i in range(len(self.lines)):
            yield self._next(i)

    async def __aiter__(self):
        for i in range(len(self.lines)):
            await asyncio.sleep(0)  # as a socket does, the reader waits for each event
            yield self._next(i)

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Server:
    """A mock OpenAI-compatible server: each request gets the next scripted answer."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[Lines] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(json.loads(request.content))
        answer = self.answers.pop(0)
        if isinstance(answer, Lines):
            self.bodies.append(answer)
            return httpx.Response(200, stream=answer, headers={"content-type": "text/event-stream"})
        if isinstance(answer, dict):
            return httpx.Response(200, json=answer)
        return answer

    def lm(self, **kwargs: Any) -> OpenAILM:
        kwargs.setdefault("backoff", 0.001)
        client = openai.OpenAI(
            api_key="sk-x",
            base_url="http://fake.local/v1",
            max_retries=0,
            timeout=2,
            http_client=httpx.Client(transport=httpx.MockTransport(self)),
        )
        async_client = openai.AsyncOpenAI(
            api_key="sk-x",
            base_url="http://fake.local/v1",
            max_retries=0,
            timeout=2,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(self)),
        )
        return OpenAILM("m", client=client, async_client=async_client, **kwargs)


def split(items: list[Any]) -> tuple[list[StreamChunk], Any]:
    *chunks, last = items
    assert all(isinstance(c, StreamChunk) for c in chunks)
    return chunks, last


def test_streamed_chain_of_thought_equals_the_plain_call():
    server = Server(Lines(events(ANSWER)), body(ANSWER))
    lm = server.lm()
    chunks, pred = split(list(ChainOfThought("question -> answer: int", lm=lm).stream(question="2+2?")))
    plain = ChainOfThought("question -> answer: int", lm=lm)(question="2+2?")
    assert server.requests[0]["stream"] is True and server.requests[0]["stream_options"] == {"include_usage": True}
    assert "stream" not in server.requests[1]
    assert {k: v for k, v in server.requests[0].items() if k not in ("stream", "stream_options")} == server.requests[1]
    fields = [c.field for c in chunks]
    assert fields == sorted(fields, key=["reasoning", "answer"].index) and len(chunks) > 4
    assert "".join(c.text for c in chunks if c.field == "reasoning") == pred.reasoning == plain.reasoning
    assert "".join(c.text for c in chunks if c.field == "answer") == "4" and pred.answer == 4
    assert isinstance(pred, Prediction) and pred == plain
    assert usage_dict(pred.usage) == usage_dict(plain.usage) == {**usage_dict(plain.usage), "prompt_tokens": 30}


def test_chunks_reach_the_consumer_before_the_answer_is_complete():
    lines = Lines(events(ANSWER, size=2))
    stream = ChainOfThought("question -> answer: int", lm=Server(lines).lm()).stream(question="q")
    first = next(stream)
    assert isinstance(first, StreamChunk) and lines.sent < len(lines.lines)
    stream.close()


def test_a_stream_served_from_the_cache_is_the_same_entry():
    cached = CachedLM(Server(Lines(events(ANSWER))).lm(), cache=Cache(None))
    cot = ChainOfThought("question -> answer: int", lm=cached)
    streamed = split(list(cot.stream(question="q")))[1]
    again = cot(question="q")  # no second answer is scripted: it must come from the cache
    assert again.usage.cache_hits == 1 and again == streamed


def test_stopping_early_closes_the_connection_and_settles_the_budget():
    lines = Lines(events(LONG, size=2))
    budget = Budget(max_lm_calls=5)
    cache = Cache(None)
    with budget.activate():
        stream = Predict("question -> answer", lm=CachedLM(Server(lines).lm(), cache=cache)).stream(question="q")
        next(stream)
        stream.close()
    assert lines.closed and lines.sent < len(lines.lines)
    assert budget.held == (0, 0) and budget.spent.calls == 1
    assert len(cache) == 0  # half an answer is never stored


def test_a_dropped_stream_is_a_connection_error_not_retried_and_not_cached():
    server = Server(Lines(events(ANSWER), drop_after=6), body(ANSWER))
    cache = Cache(None)
    cot = ChainOfThought("question -> answer: int", lm=CachedLM(server.lm(max_retries=3), cache=cache))
    got: list[Any] = []
    with pytest.raises(LMConnectionError, match="not retried") as info:
        for item in cot.stream(question="q"):
            got.append(item)
    assert got and all(isinstance(c, StreamChunk) for c in got)
    assert len(server.requests) == 1 and len(cache) == 0
    assert info.value.attempts == 1


def test_a_drop_before_any_text_is_retried_and_a_cut_stream_is_refused():
    server = Server(Lines(events(ANSWER), drop_after=0), Lines(events(ANSWER)))
    chunks, pred = split(list(ChainOfThought("question -> answer: int", lm=server.lm()).stream(question="q")))
    assert len(server.requests) == 2 and pred.answer == 4 and pred.usage.retries == 1
    # The body ends cleanly but before the answer finished: no finish_reason, no [DONE].
    server = Server(Lines(events(ANSWER, finish=None, usage=False, done=False)))
    with pytest.raises(LMConnectionError, match="ended before the answer was complete"):
        list(Predict("question -> answer", lm=server.lm(max_retries=0)).stream(question="q"))


def test_an_error_event_mid_stream_is_an_lm_error():
    lines = events(ANSWER)[:3] + [b'data: {"error": {"message": "model crashed", "code": 500}}\n\n']
    server = Server(Lines(lines))
    with pytest.raises(LMResponseError, match="model crashed"):
        list(Predict("question -> answer", lm=server.lm(max_retries=0)).stream(question="q"))


def test_logprobs_requests_are_not_streamed_but_still_reach_the_stream():
    server = Server(body('{"answer": "Paris"}'))
    qa = Predict("question -> answer", lm=server.lm(), logprobs=True)
    chunks, pred = split(list(qa.stream(question="q")))
    assert "stream" not in server.requests[0]
    assert chunks == [StreamChunk("self", "answer", "Paris")] and pred.answer == "Paris"


def test_astream_over_the_async_client():
    server = Server(Lines(events(ANSWER, size=3)), Lines(events(ANSWER), drop_after=5))
    lm = server.lm()

    async def run() -> list[Any]:
        return [item async for item in ChainOfThought("question -> answer: int", lm=lm).astream(question="q")]

    chunks, pred = split(asyncio.run(run()))
    assert len(chunks) > 4 and pred.answer == 4
    assert "".join(c.text for c in chunks if c.field == "reasoning") == pred.reasoning
    with pytest.raises(LMConnectionError, match="not retried"):
        asyncio.run(run())


def test_astream_stopped_early_closes_the_connection():
    lines = Lines(events(LONG, size=2))
    budget = Budget(max_lm_calls=5)

    async def run() -> None:
        qa = Predict("question -> answer", lm=Server(lines).lm())
        async with contextlib.aclosing(qa.astream(question="q")) as stream:
            async for _ in stream:
                break

    with budget.activate():
        asyncio.run(run())
    assert lines.closed and lines.sent < len(lines.lines)
    assert budget.held == (0, 0)


@pytest.mark.slow
def test_streaming_against_the_real_server(server_url):
    lm = OpenAILM("smollm2", base_url=server_url, temperature=0.0, max_tokens=64)
    cot = ChainOfThought("question -> answer", lm=lm)
    chunks, pred = split(list(cot.stream(question="What is the capital of France?")))
    # Pieces the reader has not yet taken are joined into one chunk, so a loaded machine may
    # see a single chunk per field; each field's chunks come in order and before the answer's.
    fields = [c.field for c in chunks]
    assert set(fields) == {"reasoning", "answer"} and fields.index("answer") > fields.index("reasoning")
    assert "reasoning" not in fields[fields.index("answer") :]
    assert pred == cot(question="What is the capital of France?")
    for name in ("reasoning", "answer"):
        assert "".join(c.text for c in chunks if c.field == name) == pred[name]
    assert pred.usage.completion_tokens > 0


def test_a_request_with_tools_keeps_the_models_tool_calls_under_stream():
    # A model answering with a tool call streams it as tool_calls deltas, not as content: a
    # streamed request with tools lost the call (an empty answer), so ReAct's native step
    # found no action under program.stream().
    from oobleck.lm.base import TEXT_SINK
    from oobleck.lm.types import LMRequest, Message, ToolCall

    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "search", "arguments": ""}}
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]},
    ]
    streamed = [
        f"data: {json.dumps({'model': 'm', 'choices': [{'index': 0, 'delta': d, 'finish_reason': None}]})}\n\n".encode()
        for d in deltas
    ]
    streamed += [
        f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'tool_calls'}]})}\n\n".encode()
    ]
    streamed += [b"data: [DONE]\n\n"]
    whole = {
        **body(""),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }

    class ByMode(Server):
        def __call__(self, request: Any) -> Any:
            sent = json.loads(request.content)
            self.requests.append(sent)
            if sent.get("stream"):
                return httpx.Response(200, stream=Lines(streamed), headers={"content-type": "text/event-stream"})
            return httpx.Response(200, json=whole)

    tool = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
    request = LMRequest(messages=(Message(role="user", content="find x"),), tools=(tool,), tool_choice="required")
    pieces: list[str] = []
    token = TEXT_SINK.set(pieces.append)
    try:
        response = ByMode().lm().complete(request)
    finally:
        TEXT_SINK.reset(token)
    assert response.choices[0].tool_calls == (ToolCall(name="search", arguments='{"q": "x"}', id="c1"),)


@pytest.mark.parametrize("calls", ["search", [["search"]], [{"index": "0", "function": {"name": "f"}}]])
def test_a_streamed_tool_call_of_the_wrong_shape_is_an_lm_response_error(calls):
    from oobleck.lm._stream_wire import ChunkReader

    with pytest.raises(LMResponseError, match="tool"):
        ChunkReader("server").chunk({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})


def test_a_server_that_ignores_stream_true_still_answers_a_streamed_call():
    # Some OpenAI-compatible servers and proxies ignore "stream": true and send the whole
    # chat completion as JSON. The SSE reader found no "data:" line in it and called it a
    # dropped stream (LMConnectionError on every attempt), though the answer was all there.
    server = Server(body(ANSWER), body(ANSWER))
    lm = server.lm(max_retries=1)
    chunks, pred = split(list(ChainOfThought("question -> answer: int", lm=lm).stream(question="2+2?")))
    assert server.requests[0]["stream"] is True and len(server.requests) == 1
    assert pred.answer == 4 and pred.reasoning == "Two and two make four."
    assert "".join(c.text for c in chunks if c.field == "reasoning") == pred.reasoning


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_stream_lines_split_on_any_sse_line_end_and_across_chunks(end):
    from oobleck.lm._stream_wire import LineSplitter

    text = 'data: {"a": "é"}' + end.decode() + "data: [DONE]" + end.decode()
    raw = text.encode()
    lines = LineSplitter()
    got = [line for i in range(len(raw)) for line in lines.push(raw[i : i + 1])] + lines.end()  # byte by byte
    assert [line for line in got if line] == ['data: {"a": "é"}', "data: [DONE]"]
