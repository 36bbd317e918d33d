"""OpenAILM against a real OpenAI-compatible server (SmolLM2 on 127.0.0.1) and injected faults."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import openai
import pytest

from oobleck import (
    ChainOfThought,
    JSONAdapter,
    LMConnectionError,
    LMRateLimitError,
    LMRequest,
    LMResponseError,
    LMTimeoutError,
    Message,
    OpenAILM,
    Predict,
    trace,
)

# The openai SDK ships its own httpx build; fault transports must come from the same one.
try:
    import httpx2 as httpx
except ImportError:  # older SDKs use httpx itself
    import httpx  # type: ignore[no-redef]

SENTIMENT = "text -> label: Literal['positive', 'negative']"
REQ = LMRequest(messages=(Message(role="user", content="hi"),))
OK_BODY = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def scripted_lm(*steps, **kwargs) -> tuple[OpenAILM, list]:
    """An OpenAILM whose transport answers with ``steps`` in order (responses or exceptions)."""
    seen: list = []
    queue = list(steps)

    def handler(request):
        seen.append(request)
        step = queue.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    client = openai.OpenAI(
        api_key="sk-secret-123456",
        base_url="http://fake.local/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        timeout=2,
    )
    kwargs.setdefault("backoff", 0.001)
    return OpenAILM("m", client=client, **kwargs), seen


# ---- the real server ----


@pytest.mark.slow
def test_predict_and_cot_against_real_server(server_url):
    lm = OpenAILM("smollm2", base_url=server_url, temperature=0, max_tokens=96)
    pred = Predict(SENTIMENT, lm=lm, adapter=JSONAdapter())(text="an utterly delightful, warm film")
    assert pred.label in ("positive", "negative")
    assert pred.usage.calls == 1 and pred.usage.prompt_tokens > 0 and pred.usage.completion_tokens > 0
    cot = ChainOfThought("question -> answer", lm=lm, adapter=JSONAdapter())(question="What is the capital of France?")
    assert isinstance(cot.reasoning, str) and isinstance(cot.answer, str) and cot.answer


@pytest.mark.slow
def test_logprobs_and_identity_from_real_server(server_url):
    lm = OpenAILM("smollm2", base_url=server_url, temperature=0, max_tokens=5)
    response = lm.complete(LMRequest(messages=(Message(role="user", content="Say hi"),), logprobs=True, top_logprobs=2))
    assert response.choices[0].logprobs and all(t.logprob <= 0 for t in response.choices[0].logprobs)
    assert lm.identity == {"backend": "openai", "model": "smollm2", "endpoint": server_url + "/"}


@pytest.mark.slow
def test_async_against_real_server(server_url):
    lm = OpenAILM("smollm2", base_url=server_url, temperature=0, max_tokens=40)
    program = Predict(SENTIMENT, lm=lm, adapter=JSONAdapter())

    async def main():
        return await asyncio.gather(*(program.acall(text=t) for t in ["great", "awful", "fine film"]))

    preds = asyncio.run(main())
    assert all(p.label in ("positive", "negative") for p in preds)


# ---- faults the real server will not produce on demand ----


def test_429_honours_retry_after_and_counts_the_retry():
    lm, seen = scripted_lm(
        httpx.Response(429, headers={"retry-after": "0.01"}, json={"error": {"message": "slow down"}}),
        httpx.Response(200, json=OK_BODY),
    )
    response = lm.complete(REQ)
    assert response.text == "hello" and response.usage.retries == 1 and len(seen) == 2


def test_5xx_then_success_and_final_failure():
    lm, seen = scripted_lm(httpx.Response(500, json={"error": {"message": "boom"}}), httpx.Response(200, json=OK_BODY))
    assert lm.complete(REQ).usage.retries == 1
    lm, seen = scripted_lm(*[httpx.Response(503, json={"error": {"message": "down"}})] * 3, max_retries=2)
    with pytest.raises(LMResponseError, match="after 3 attempts") as info:
        lm.complete(REQ)
    assert info.value.status == 503 and len(seen) == 3


def test_rate_limit_exhausted():
    lm, _ = scripted_lm(*[httpx.Response(429, json={"error": {"message": "no"}})] * 2, max_retries=1)
    with pytest.raises(LMRateLimitError):
        lm.complete(REQ)


def test_timeouts_and_dropped_connections_are_retried():
    lm, seen = scripted_lm(
        httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), httpx.Response(200, json=OK_BODY)
    )
    assert lm.complete(REQ).usage.retries == 2
    lm, _ = scripted_lm(httpx.ReadTimeout("slow"), max_retries=0)
    with pytest.raises(LMTimeoutError):
        lm.complete(REQ)


def test_garbage_and_truncated_bodies():
    lm, _ = scripted_lm(httpx.Response(200, content=b'{"choices": [{"mess'), max_retries=0)
    with pytest.raises(LMResponseError):
        lm.complete(REQ)
    lm, _ = scripted_lm(httpx.Response(200, json={"hello": "world"}), max_retries=0)
    with pytest.raises(LMResponseError, match="choices"):
        lm.complete(REQ)
    lm, _ = scripted_lm(
        httpx.Response(200, content=b"<html>proxy error</html>", headers={"content-type": "text/html"}), max_retries=0
    )
    with pytest.raises(LMResponseError):
        lm.complete(REQ)


def test_empty_answer_is_a_parse_error_not_a_crash():
    body = dict(
        OK_BODY, choices=[{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]
    )
    lm, _ = scripted_lm(httpx.Response(200, json=body))
    from oobleck import ParseError

    with pytest.raises(ParseError):
        Predict("q -> a, b", lm=lm)(q="x")


def test_client_errors_are_not_retried_and_keys_never_leak(caplog):
    lm, seen = scripted_lm(httpx.Response(401, json={"error": {"message": "bad key sk-secret-123456"}}))
    with caplog.at_level(logging.DEBUG), trace() as t, pytest.raises(LMResponseError) as info:
        Predict("q -> a", lm=lm)(q="x")
    assert len(seen) == 1 and "api_key" in str(info.value)
    assert "sk-secret-123456" not in str(info.value) and "sk-secret-123456" not in caplog.text
    assert "sk-secret-123456" not in json.dumps(lm.identity)
    assert t.entries[0].error is info.value
    lm, seen = scripted_lm(httpx.Response(400, json={"error": {"message": "bad param"}}))
    with pytest.raises(LMResponseError, match="bad param"):
        lm.complete(REQ)
    assert len(seen) == 1


def test_server_down_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    lm = OpenAILM("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.001)
    with pytest.raises(LMConnectionError, match="is it running"):
        lm.complete(REQ)


def test_request_parameters_reach_the_wire():
    lm, seen = scripted_lm(httpx.Response(200, json=OK_BODY), temperature=0.3)
    lm.complete(
        LMRequest(
            messages=REQ.messages,
            max_tokens=7,
            stop=("END",),
            seed=5,
            n=1,
            logprobs=True,
            top_logprobs=2,
            response_format={"name": "out put", "schema": {"type": "object"}},
            sample_index=3,
        )
    )
    body = json.loads(seen[0].content)
    assert body["temperature"] == 0.3 and body["max_tokens"] == 7 and body["stop"] == ["END"] and body["seed"] == 5
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["response_format"]["json_schema"]["name"] == "out_put"
    assert "sample_index" not in body and "cache" not in body


def test_concurrency_limit_is_shared_by_threads():
    import threading

    active = 0
    peak = 0
    lock = threading.Lock()
    # Each request waits at the barrier for a second one: the limit of 2 lets exactly pairs
    # through (a third concurrent request would show in the peak; a limit of 1 would time out).
    pair = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def handler(request):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        pair.wait()
        with lock:
            active -= 1
        return httpx.Response(200, json=OK_BODY)

    client = openai.OpenAI(
        api_key="k",
        base_url="http://fake.local/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    lm = OpenAILM("m", client=client, max_concurrency=2)

    def call() -> None:
        try:
            lm.complete(REQ)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and peak == 2


def test_async_calls_in_one_event_loop_after_another_share_no_semaphore():
    # One semaphore per loop (a semaphore binds to the loop that first waits on it); each
    # asyncio.run used to leave its loop and semaphore behind for good.
    async def answer(request):
        await asyncio.sleep(0.001)
        return httpx.Response(200, json=OK_BODY)

    client = openai.AsyncOpenAI(
        api_key="sk-x", base_url="http://127.0.0.1:9/v1", max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
    )  # fmt: skip
    lm = OpenAILM("m", client=openai.OpenAI(api_key="sk-x", base_url="http://127.0.0.1:9/v1"), async_client=client,
                  max_concurrency=1)  # fmt: skip

    async def contended():
        return await asyncio.gather(lm.acomplete(REQ), lm.acomplete(REQ))  # the second waits on the semaphore

    for _ in range(30):
        assert [r.text for r in asyncio.run(contended())] == ["hello", "hello"]
    assert len(lm._async_slots) <= 1  # only the last loop's, until another loop calls
