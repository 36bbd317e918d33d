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
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
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
        api_key="unused",
        base_url="http://fake.local/v1",
        max_retries=0,
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


# ---- through predictors, modules, evaluate and the budget ----

from oobleck import Cache, CachedLM, ChatAdapter, Example, FakeLM, Module, Predict, trace  # noqa: E402
from oobleck._budget import Budget  # noqa: E402
from oobleck.evaluation import evaluate  # noqa: E402
from oobleck.metrics import exact_match  # noqa: E402
from oobleck.optimize import BootstrapFewShot  # noqa: E402

GOOD = "[[ ## a ## ]]\n4"


def retrying_predict(lm) -> Predict:
    return Predict("q -> a: int", lm=lm, adapter=ChatAdapter(), max_retries=2)


class Wrapper(Module):
    """A module around a predictor that needs a parse retry."""

    def __init__(self, lm) -> None:
        self.inner = retrying_predict(lm)

    def forward(self, q):
        return self.inner(q=q)


def test_a_parse_retry_inside_a_module_is_counted_once():
    lm = FakeLM(["not a number", GOOD], cycle=True)
    direct = retrying_predict(lm)(q="2+2")
    with trace() as t:
        nested = Wrapper(lm)(q="2+2")
    for usage in (direct.usage, nested.usage, t.usage):
        assert (usage.calls, usage.retries) == (2, 1)
    assert len(lm.requests) == 4
    assert [e.usage.retries for e in t.entries] == [0, 1]  # one entry per attempt


def test_evaluate_and_its_budget_count_what_was_sent():
    lm = FakeLM(["nope", "still nope", GOOD], cycle=True)
    rows = [Example(q=str(i), a=4).with_inputs("q") for i in range(3)]
    budget = Budget()
    with budget.activate():
        result = evaluate(Wrapper(lm), rows, exact_match, progress=False)
    assert result.score == 100.0
    assert result.usage.calls == budget.spent.calls == len(lm.requests) == 9
    assert result.usage.retries == budget.spent.retries == 6


def test_an_lm_error_after_a_parse_retry_counts_both_attempts():
    def answer(request):
        if len(request.messages) > 2:  # the repair turn
            raise LMResponseError("server gone")
        return "not a number"

    lm = FakeLM(answer)
    with trace() as t, pytest.raises(LMResponseError):
        retrying_predict(lm)(q="x")
    assert (t.usage.calls, t.usage.retries) == (2, 1) == (len(lm.requests), 1)


def test_a_retry_answered_by_the_cache_is_a_cache_hit_not_a_call():
    backend = FakeLM(["not a number", GOOD])
    lm = CachedLM(backend, cache=Cache(None))
    retrying_predict(lm)(q="x")
    again = retrying_predict(lm)(q="x").usage
    assert (again.calls, again.retries, again.cache_hits) == (0, 0, 2)


@pytest.mark.parametrize("limit", [5, 8, 13])
def test_max_lm_calls_caps_what_reached_the_backend(limit):
    backend = FakeLM(["junk", GOOD], cycle=True)  # every run costs a first try and a retry
    train = [Example(q=str(i), a=4).with_inputs("q") for i in range(20)]
    opt = BootstrapFewShot(exact_match, max_bootstrapped_demos=20, max_labeled_demos=0, max_lm_calls=limit)
    compiled = opt.compile(retrying_predict(backend), trainset=train)
    assert compiled.compile_usage.calls == len(backend.requests) <= limit
    assert compiled.compile_usage.retries == len(backend.requests) // 2
