"""OpenAILM against a scripted HTTP server on 127.0.0.1: each fault asserts the outcome and the counts."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from scripted_server import ScriptedServer, completion, delayed, hang_up, reply, silence, trickle

from oobleck import (
    ConfigError,
    LMConnectionError,
    LMContextLengthError,
    LMRateLimitError,
    LMRequest,
    LMResponseError,
    LMTimeoutError,
    Message,
    OpenAILM,
)

REQ = LMRequest(messages=(Message(role="user", content="hi"),))
SECRET = "sk-test-secret-abcdef123456"


@pytest.fixture
def scripted():
    servers: list[ScriptedServer] = []

    def start(*steps, repeat_last=True):
        server = ScriptedServer(list(steps), repeat_last=repeat_last)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def lm_for(server: ScriptedServer, **kwargs) -> OpenAILM:
    kwargs.setdefault("backoff", 0.001)
    kwargs.setdefault("max_backoff", 0.05)
    return OpenAILM("m", base_url=server.url, api_key=SECRET, **kwargs)


def wait_until(condition, seconds=5.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not condition():
        time.sleep(0.02)
    return condition()


def test_happy_path_counts_one_call(scripted):
    server = scripted(reply(200, completion("hello")))
    response = lm_for(server).complete(REQ)
    assert response.text == "hello" and response.usage.calls == 1 and response.usage.retries == 0
    assert len(server.seen) == 1
    assert json.loads(server.seen[0].request.split(b"\r\n\r\n", 1)[1])["messages"] == [
        {"role": "user", "content": "hi"}
    ]


def test_trickling_body_hits_the_per_attempt_deadline(scripted):
    # 250 bytes at one byte per 50 ms would take 12 s; the deadline is 1.5 s per attempt.
    body = completion("x" * 60)
    server = scripted(trickle(body, every=0.05))
    lm = lm_for(server, timeout=1.5, max_retries=1)
    with pytest.raises(LMTimeoutError, match="too slowly") as info:
        lm.complete(REQ)
    assert "after 2 attempts" in str(info.value)
    assert len(server.seen) == 2
    # Both attempts were abandoned mid-body: the server could not finish sending either.
    full = len(json.dumps(body))
    assert wait_until(lambda: all(s.hung_up for s in server.seen))
    assert all(s.sent < full for s in server.seen)


def test_trickling_body_async_is_cut_at_the_deadline(scripted):
    server = scripted(trickle(completion("y" * 60), every=0.05))
    lm = lm_for(server, timeout=1.5, max_retries=0)  # 250 bytes take 12 s; 1.5 s leaves room on a loaded machine
    with pytest.raises(LMTimeoutError):
        asyncio.run(lm.acomplete(REQ))
    assert len(server.seen) == 1


def test_silent_server_times_out_once_per_attempt(scripted):
    server = scripted(silence(3.0))
    with pytest.raises(LMTimeoutError):
        lm_for(server, timeout=0.3, max_retries=2).complete(REQ)
    assert len(server.seen) == 3


@pytest.mark.parametrize("retry_after", ["nan", "inf", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "1e400", None])
def test_429_with_odd_or_missing_retry_after_backs_off_and_recovers(scripted, retry_after):
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    server = scripted(
        reply(429, {"error": {"message": "slow down"}}, headers), reply(200, completion()), repeat_last=True
    )
    response = lm_for(server).complete(REQ)
    assert (
        response.text == "hello" and response.usage.retries == 1 and response.usage.calls == 2
    )  # both attempts were sent
    assert len(server.seen) == 2


def test_429_retry_after_is_capped_by_max_backoff(scripted):
    server = scripted(reply(429, {"error": {"message": "later"}}, {"Retry-After": "86400"}), reply(200, completion()))
    response = lm_for(server, max_backoff=0.01).complete(REQ)
    assert response.usage.retries == 1 and len(server.seen) == 2


def test_429_exhausted_is_a_rate_limit_error(scripted):
    server = scripted(reply(429, {"error": {"message": "no"}}, {"Retry-After": "0"}))
    with pytest.raises(LMRateLimitError, match="after 3 attempts"):
        lm_for(server, max_retries=2).complete(REQ)
    assert len(server.seen) == 3


def test_5xx_retried_then_final_status_kept(scripted):
    server = scripted(
        reply(500, {"error": {"message": "boom"}}), reply(502, b"<html>bad gateway</html>"), reply(200, completion())
    )
    assert lm_for(server).complete(REQ).usage.retries == 2
    assert len(server.seen) == 3
    server = scripted(reply(503, {"error": {"message": "down"}}))
    with pytest.raises(LMResponseError) as info:
        lm_for(server, max_retries=1).complete(REQ)
    assert info.value.status == 503 and len(server.seen) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"choices": [None]},
        {"choices": []},
        {"choices": "nope"},
        {"choices": [{"message": "text"}]},
        {"choices": [{"message": {"content": 5}}]},
        {"choices": [{"message": {"content": "a"}, "logprobs": {"content": [None]}}]},
        {"choices": [{"message": {"content": "a"}, "logprobs": {"content": [{"token": "a", "logprob": "high"}]}}]},
        # A log-probability too large for a float (OverflowError), or +Infinity (it would outrank every label).
        {"choices": [{"message": {"content": "a"}, "logprobs": {"content": [{"token": "a", "logprob": 10**400}]}}]},
        b'{"choices": [{"message": {"content": "a"}, "logprobs": {"content": [{"token": "a", "logprob": Infinity}]}}]}',
        {
            "choices": [
                {
                    "message": {"content": "a"},
                    "logprobs": {"content": [{"token": "a", "top_logprobs": [{"token": "b", "logprob": -(10**400)}]}]},
                }
            ]
        },
        [1, 2, 3],
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe garbage",
        b'{"choices": [{"mess',
        b'{"n": ' + b"1" * 5000 + b"}",
    ],
)
def test_garbage_bodies_are_response_errors_and_retried(scripted, body):
    server = scripted(reply(200, body), reply(200, completion("recovered")))
    assert lm_for(server).complete(REQ).text == "recovered"
    assert len(server.seen) == 2
    server = scripted(reply(200, body))
    with pytest.raises(LMResponseError) as info:
        lm_for(server, max_retries=0).complete(REQ)
    assert "expected" in str(info.value) and len(server.seen) == 1


def test_odd_usage_counts_never_fail_a_call(scripted):
    body = dict(completion(), usage={"prompt_tokens": "many", "completion_tokens": -3})
    response = lm_for(scripted(reply(200, body))).complete(REQ)
    assert response.text == "hello" and response.usage.prompt_tokens == 0 and response.usage.completion_tokens == 0


@pytest.mark.parametrize(
    "error",
    [
        {
            "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
            "code": "context_length_exceeded",
        },
        {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
        },
    ],
)
def test_context_length_errors_are_named_and_not_retried(scripted, error):
    server = scripted(reply(400, {"error": error}))
    with pytest.raises(LMContextLengthError, match="fewer demos"):
        lm_for(server, max_retries=3).complete(REQ)
    assert len(server.seen) == 1


def test_dropped_connection_then_success(scripted):
    server = scripted(hang_up(), reply(200, completion()))
    response = lm_for(server).complete(REQ)
    assert response.usage.retries == 1 and len(server.seen) == 2


def test_connection_refused_counts_every_attempt(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lm = OpenAILM("m", base_url=f"http://127.0.0.1:{port}/v1", api_key=SECRET, max_retries=2, backoff=0.001)
    with caplog.at_level(logging.DEBUG), pytest.raises(LMConnectionError, match="after 3 attempts") as info:
        lm.complete(REQ)
    assert caplog.text.count("retry") == 2
    assert SECRET not in str(info.value) and SECRET not in caplog.text


@pytest.mark.parametrize(
    "key", ["model", "messages", "extra_headers", "timeout", "base_url", "api_key", "extra_body", "stream"]
)
def test_request_extra_cannot_take_the_lms_settings(scripted, key):
    server = scripted(reply(200, completion()))
    with pytest.raises(ConfigError, match="constructor"):
        lm_for(server).complete(REQ.model_copy(update={"extra": {key: "x"}}))
    assert server.seen == []


def test_request_extra_sampling_knobs_pass(scripted):
    server = scripted(reply(200, completion()))
    lm_for(server, temperature=0.2).complete(REQ.model_copy(update={"extra": {"top_k": 5, "presence_penalty": 0.1}}))
    sent = json.loads(server.seen[0].request.split(b"\r\n\r\n", 1)[1])
    assert (
        sent["top_k"] == 5 and sent["presence_penalty"] == 0.1 and sent["model"] == "m" and sent["temperature"] == 0.2
    )


def test_keys_never_reach_logs_errors_or_identity(scripted, caplog):
    server = scripted(reply(401, {"error": {"message": f"bad key {SECRET}"}}))
    lm = lm_for(server)
    with caplog.at_level(logging.DEBUG), pytest.raises(LMResponseError) as info:
        lm.complete(REQ)
    assert SECRET not in str(info.value) and SECRET not in caplog.text
    assert SECRET not in json.dumps(lm.identity) and SECRET not in repr(lm) and SECRET not in json.dumps(lm.settings)
    assert f"Bearer {SECRET}".encode() in server.seen[0].request  # it did go where it belongs


def test_waiting_for_a_concurrency_slot_does_not_eat_the_deadline(scripted):
    # One slot, two callers, each answer takes 0.4 s: the second waits 0.4 s for the slot and
    # still gets its full 0.7 s once it sends.
    server = scripted(delayed(0.4, completion("slow but fine")))
    lm = lm_for(server, timeout=0.7, max_retries=0, max_concurrency=1)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: lm.complete(REQ).text, range(2)))
    assert results == ["slow but fine"] * 2 and len(server.seen) == 2


def test_a_call_deadline_bounds_every_attempt_and_wait(scripted):
    # Each attempt alone may take 0.5 s, and 5 retries are allowed, but the call has 1.0 s in all.
    server = scripted(trickle(completion("z" * 60), every=0.05))
    lm = lm_for(server, timeout=0.5, max_retries=5, deadline=1.0)
    with pytest.raises(LMTimeoutError, match="deadline") as info:
        lm.complete(REQ)
    # 0.5 s, then the 0.5 s left: two attempts, not six (one if the machine is very slow).
    assert 1 <= len(server.seen) <= 2 and "deadline=1.0" in str(info.value)
    with pytest.raises(LMTimeoutError):
        asyncio.run(lm_for(server, timeout=0.5, max_retries=5, deadline=1.0).acomplete(REQ))


def test_a_trickled_stream_line_hits_the_per_attempt_deadline(scripted):
    # Streamed, the body was read line by line: the deadline was looked at only when a whole
    # line had come, so a server trickling one long event without its newline held the call
    # far past timeout= (here 300 bytes at 50 ms each: 15 s, against a 1.5 s deadline).
    from scripted_server import response_bytes

    from oobleck.lm.base import TEXT_SINK

    chunk = {"choices": [{"index": 0, "delta": {"content": "x" * 200}, "finish_reason": "stop"}]}
    data = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()

    def slow_event(sock, _):
        head, body = response_bytes(200, data, {"Content-Type": "text/event-stream"})
        sock.sendall(head.replace(b"Content-Type: application/json\r\n", b""))
        for i in range(len(body)):
            time.sleep(0.05)
            sock.sendall(body[i : i + 1])

    server = scripted(slow_event)
    lm = lm_for(server, timeout=1.5, max_retries=0)
    token = TEXT_SINK.set(lambda piece: None)
    started = time.monotonic()
    try:
        with pytest.raises(LMTimeoutError, match="too slowly"):
            lm.complete(REQ)
    finally:
        TEXT_SINK.reset(token)
    assert time.monotonic() - started < 6.0
