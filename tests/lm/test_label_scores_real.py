"""Scoring on the real SmolLM2: LocalLM (llama.cpp) against TransformersLM, and OpenAILM
against a real llama.cpp HTTP server, on the same GGUF."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from oobleck.errors import ConfigError
from oobleck.lm.openai import OpenAILM
from oobleck.lm.types import LMRequest, Message

pytestmark = pytest.mark.slow

SST2 = Path(__file__).resolve().parents[2] / "examples" / "data" / "sst2_dev.jsonl"
SYSTEM = "Classify the sentiment of a movie review sentence. Answer with one word: positive or negative."
INTENTS = ("card_arrival", "card_linking", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "pin_blocked")
INTENT_ROWS = (
    "My new card still has not arrived after two weeks.",
    "How do I link the card I got in the post to my account?",
    "Someone took my wallet with my card in it.",
    "What rate do you use to convert euros to dollars?",
    "I tried to add money to my account but it did not work.",
    "I typed the wrong PIN three times and now it is blocked.",
)


def sst2_rows(n: int) -> list[str]:
    with SST2.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def request(text: str, labels: tuple[str, ...], system: str = SYSTEM) -> LMRequest:
    return LMRequest(
        messages=(Message(role="system", content=system), Message(role="user", content=text)), score=labels
    )


def best(response) -> str:
    return max(response.choices, key=lambda c: c.logprob).text


def test_local_scores_match_its_own_generation(local_lm):
    ask = LMRequest(
        messages=(Message(role="user", content="What is the capital of France?"),), max_tokens=8, logprobs=True
    )
    generated = local_lm.complete(ask)
    scored = local_lm.complete(ask.model_copy(update={"score": (generated.text, "Rome is the capital.")}))
    mine = scored.choices[0]
    assert mine.finish_reason == "score" and [t.token for t in mine.logprobs] == [
        t.token for t in generated.choices[0].logprobs
    ]
    assert math.isclose(mine.logprob, generated.choices[0].logprob, abs_tol=1e-3)
    assert mine.logprob > scored.choices[1].logprob
    assert scored.usage.calls == 1 and scored.usage.completion_tokens == 0


def test_local_scores_shared_prefixes_special_tokens_and_empty_completions(local_lm):
    labels = ("1", "10", "pos", "positive", "positive<|im_end|>", "")
    got = {c.text: c for c in local_lm.complete(request("great fun", labels)).choices}
    # "10" is "1" then "0": its first token's log-probability is the one "1" got, plus one more token.
    assert [t.token for t in got["10"].logprobs] == ["1", "0"]
    assert got["10"].logprobs[0].logprob == got["1"].logprob and got["10"].logprob < got["1"].logprob
    assert (
        len(got["pos"].logprobs) == len(got["positive"].logprobs) == 1 and got["pos"].logprob != got["positive"].logprob
    )
    # The end-of-turn token is a token like any other: scoring it tells "pos" from "positive" when one is a prefix.
    assert len(got["positive<|im_end|>"].logprobs) == 2 and got["positive<|im_end|>"].logprob < got["positive"].logprob
    assert got[""].logprobs == () and got[""].logprob == 0.0


def test_local_and_transformers_rank_labels_alike(local_lm, transformers_lm):
    rows = [(text, ("positive", "negative"), SYSTEM) for text in sst2_rows(34)]
    system = "Name the banking intent of the message, one of: " + ", ".join(INTENTS) + "."
    rows += [(text, INTENTS, system) for text in INTENT_ROWS]
    assert len(rows) == 40
    agree, diffs = 0, []
    for text, labels, sys in rows:
        a = local_lm.complete(request(text, labels, sys))
        b = transformers_lm.complete(request(text, labels, sys))
        # Same tokens on both (the tokenizers agree on these labels), close values (Q4_1 on both sides).
        assert [len(c.logprobs) for c in a.choices] == [len(c.logprobs) for c in b.choices]
        agree += best(a) == best(b)
        diffs += [abs(x.logprob - y.logprob) for x, y in zip(a.choices, b.choices)]
    assert agree >= 36, f"LocalLM and TransformersLM agree on {agree} of 40 rows"
    assert sorted(diffs)[len(diffs) // 2] < 0.5  # the median label's log-probability differs by less than 0.5


def test_openai_on_llama_server_scores_like_local(local_lm, server_url):
    lm = OpenAILM("smollm2", base_url=server_url, scoring="llama.cpp")
    assert lm.capabilities.scoring
    for text in sst2_rows(5):
        labels = ("positive", "negative", "very negative", "10")
        here = local_lm.complete(request(text, labels))
        there = lm.complete(request(text, labels))
        assert [c.text for c in there.choices] == list(labels)
        for a, b in zip(here.choices, there.choices):
            assert [t.token for t in a.logprobs] == [t.token for t in b.logprobs]
            assert math.isclose(a.logprob, b.logprob, abs_tol=1e-3)


def test_openai_first_token_scoring_is_exact_for_one_token_labels_and_refuses_shared_first_tokens(local_lm, server_url):
    lm = OpenAILM("smollm2", base_url=server_url, scoring="first_token")
    ask = LMRequest(
        messages=(
            Message(
                role="user", content="Is this review positive or negative? 'A wonderful film.' Answer with one word."
            ),
        ),
        score=("positive", "negative"),
    )
    exact = local_lm.complete(ask)
    first = lm.complete(ask)
    assert [c.finish_reason for c in first.choices] == ["score", "score"]
    for a, b in zip(exact.choices, first.choices):
        assert math.isclose(a.logprob, b.logprob, abs_tol=1e-3)
    with pytest.raises(ConfigError, match="same token|none of the server's top"):
        lm.complete(ask.model_copy(update={"score": ("positive", "positive!")}))
