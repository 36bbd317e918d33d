"""One meaning for the counts: every attempt sent to a backend is a call; retries are the
subset of calls that were retries (parse repairs and transport retries alike)."""

from __future__ import annotations

import openai
import pytest

from oobleck import LMRequest, LMResponseError, Message, OpenAILM

try:  # the SDK's own httpx build (see tests/lm/test_openai.py)
    import httpx2 as httpx
except ImportError:
    import httpx  # type: ignore[no-redef]

OK = {
    "id": "x", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"a": "4"}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
DOWN = {"error": {"message": "down"}}


def server(*steps: int) -> tuple[OpenAILM, list]:
    """An OpenAILM whose server answers with these HTTP statuses in order (200 = a completion)."""
    sent: list = []
    queue = list(steps)

    def handler(request):
        sent.append(request)
        status = queue.pop(0)
        return httpx.Response(status, json=OK if status == 200 else DOWN)

    client = openai.OpenAI(
        api_key="unused", base_url="http://fake.local/v1", max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    return OpenAILM("m", client=client, backoff=0.001, max_retries=3), sent


REQ = LMRequest(messages=(Message(role="user", content="hi"),))


def test_transport_retries_are_calls_and_retries():
    lm, sent = server(429, 503, 200)
    usage = lm.complete(REQ).usage
    assert len(sent) == 3
    assert (usage.calls, usage.retries) == (3, 2)


def test_a_call_that_gives_up_says_how_many_attempts_were_sent():
    lm, sent = server(500, 500, 500, 500)
    with pytest.raises(LMResponseError) as info:
        lm.complete(REQ)
    assert info.value.attempts == len(sent) == 4
