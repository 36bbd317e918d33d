"""The scoring contract (LMRequest.score) without a model: FakeLM's scripted log-probabilities,
the llama.cpp teacher-forcing algorithm on a scripted server, and backends that refuse."""

from __future__ import annotations

import math

import pytest

from oobleck import FakeLM, OpenAILM
from oobleck.errors import ConfigError, LMContextLengthError, LMResponseError
from oobleck.lm import _llama_score
from oobleck.lm.base import Capabilities
from oobleck.lm.types import LMRequest, Message

MESSAGES = (Message(role="user", content="great fun"),)


def ask(score) -> LMRequest:
    return LMRequest(messages=MESSAGES, score=score)


# ---- FakeLM ----


def test_fake_scores_one_choice_per_completion_in_order_with_token_counts():
    lm = FakeLM(scores={"positive": -0.1, "negative": -2.5, "very negative": [-3.0, -0.5]})
    assert lm.capabilities.scoring
    response = lm.complete(ask(("negative", "very negative", "positive")))
    assert [c.text for c in response.choices] == ["negative", "very negative", "positive"]
    assert [c.logprob for c in response.choices] == [-2.5, -3.5, -0.1]
    assert [len(c.logprobs) for c in response.choices] == [1, 2, 1]
    assert "".join(t.token for t in response.choices[1].logprobs) == "very negative"
    assert {c.finish_reason for c in response.choices} == {"score"}
    assert response.usage.calls == 1 and response.usage.completion_tokens == 0
    assert lm.requests == [ask(("negative", "very negative", "positive"))]


def test_fake_scores_from_a_function_of_the_request():
    lm = FakeLM(scores=lambda r: {"yes": -0.5 if "great" in r.messages[-1].content else -3.0, "no": -1.0})
    assert lm.complete(ask("yes")).choices[0].logprob == -0.5
    other = LMRequest(messages=(Message(role="user", content="dull"),), score=("yes", "no"))
    assert [c.logprob for c in lm.complete(other).choices] == [-3.0, -1.0]


def test_fake_scoring_refuses_what_is_not_scripted():
    with pytest.raises(ConfigError, match="no scripted log-probabilities"):
        FakeLM(["hi"]).complete(ask("hi"))
    assert not FakeLM(["hi"]).capabilities.scoring
    with pytest.raises(LMResponseError, match=r"no scripted score for \['maybe'\]"):
        FakeLM(scores={"yes": -1.0}).complete(ask(("yes", "maybe")))
    with pytest.raises(ConfigError, match="at most 0"):
        FakeLM(scores={"yes": 0.5}).complete(ask("yes"))
    # Explicit capabilities win over the default that scores= implies.
    assert not FakeLM(scores={"yes": -1.0}, capabilities=Capabilities()).capabilities.scoring


def test_fake_generation_script_is_not_consumed_by_scoring():
    lm = FakeLM(["first"], scores={"a": -1.0})
    lm.complete(ask("a"))
    assert lm("hello") == "first"


# ---- the llama.cpp algorithm, on a scripted server ----


class ScriptedLlama:
    """A llama.cpp server in miniature: one token per character (a merge for "ab"), and a
    log-probability that depends on the whole context, so reuse of a wrong context shows."""

    def __init__(self, *, merge_prompt_tail: bool = False, ignore_grammar: bool = False, error: dict | None = None):
        self.merge_prompt_tail = merge_prompt_tail
        self.ignore_grammar = ignore_grammar
        self.error = error
        self.bodies: list[dict] = []

    def apply_template(self, messages):
        return "<" + "|".join(m["content"] for m in messages) + ">"

    def tokenize(self, text, *, add_special):
        ids, i = [], 0
        while i < len(text):
            if text.startswith("ab", i):
                ids.append(1000)
                i += 2
            elif self.merge_prompt_tail and text.startswith(">x", i):
                ids.append(2000)  # the prompt's last character merges with a completion starting "x"
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    @staticmethod
    def logprob(context, token):
        return -((sum(context) * 31 + token) % 97) / 10 - 0.01

    def completion(self, body):
        self.bodies.append(body)
        if self.error is not None:
            return {"error": self.error}
        grammar = body["grammar"].split("start: ")[1]
        forced = [int(part[2:-2]) for part in grammar.split()]
        assert len(forced) == body["max_tokens"] and body["post_sampling_probs"] is False
        context = list(body["prompt"])
        content = []
        for token in forced:
            token = token + 1 if self.ignore_grammar else token
            content.append(
                {"id": token, "token": chr(token) if token < 1000 else "ab", "logprob": self.logprob(context, token)}
            )
            context.append(token)
        return {"choices": [{"logprobs": {"content": content}}]}


def teacher_forced(server, messages, text):
    """The reference: each token's log-probability after the prompt and the tokens before it."""
    prompt = server.tokenize(server.apply_template([m.model_dump() for m in messages]), add_special=True)
    ids = server.tokenize(text, add_special=False)
    return sum(server.logprob(prompt + ids[:j], t) for j, t in enumerate(ids))


def test_every_completion_gets_its_teacher_forced_log_probability():
    server = ScriptedLlama()
    texts = ("pos", "positive", "1", "10", "neg", "abab", "")
    choices, sent = _llama_score.score(server, MESSAGES, texts)
    assert [c.text for c in choices] == list(texts)
    for c in choices:
        assert math.isclose(c.logprob, teacher_forced(server, MESSAGES, c.text), abs_tol=1e-12)
        assert len(c.logprobs) == len(server.tokenize(c.text, add_special=False))
    assert choices[-1].logprobs == () and choices[-1].logprob == 0.0


def test_shared_prefixes_are_sent_as_prompt_and_not_forced_again():
    server = ScriptedLlama()
    prompt_len = len(server.tokenize(server.apply_template([MESSAGES[0].model_dump()]), add_special=True))
    _, sent = _llama_score.score(server, MESSAGES, ("pos", "positive", "posh", "pos"))
    # "pos" (3 tokens), then "posh" and "positive" each force only what follows "pos".
    assert [b["max_tokens"] for b in server.bodies] == [3, 1, 5]
    assert [len(b["prompt"]) - prompt_len for b in server.bodies] == [0, 3, 3]
    assert sent == prompt_len + 3 + 1 + 5


def test_a_completion_that_merges_with_the_prompt_is_tokenized_alone():
    server = ScriptedLlama(merge_prompt_tail=True)
    (choice,), _ = _llama_score.score(server, MESSAGES, ("xy",))
    assert [t.token for t in choice.logprobs] == ["x", "y"]
    assert math.isclose(choice.logprob, teacher_forced(server, MESSAGES, "xy"))


def test_a_server_that_ignores_the_grammar_or_fails_is_an_error_not_a_score():
    with pytest.raises(LMResponseError, match="ignored the grammar"):
        _llama_score.score(ScriptedLlama(ignore_grammar=True), MESSAGES, ("pos",))
    with pytest.raises(LMContextLengthError, match="do not fit"):
        _llama_score.score(
            ScriptedLlama(error={"message": "the request exceeds the available context size"}), MESSAGES, ("a",)
        )
    with pytest.raises(LMResponseError, match="could not score"):
        _llama_score.score(ScriptedLlama(error={"message": "boom"}), MESSAGES, ("a",))


# ---- backends that do not score ----


def test_openai_without_scoring_refuses_clearly_and_declares_nothing():
    lm = OpenAILM("m", base_url="http://127.0.0.1:9/v1")
    assert not lm.capabilities.scoring
    with pytest.raises(ConfigError, match="scoring='llama.cpp'"):
        lm.complete(ask(("a", "b")))
    assert OpenAILM("m", base_url="http://127.0.0.1:9/v1", scoring="first_token").capabilities.scoring
    with pytest.raises(ConfigError, match="scoring must be"):
        OpenAILM("m", base_url="http://127.0.0.1:9/v1", scoring="echo")  # type: ignore[arg-type]


# ---- OpenAILM scoring="first_token" on a scripted chat server (OpenAI's own API, say) ----


def first_token_lm(top: dict[str, float]):
    import json

    import openai

    try:
        import httpx2 as httpx  # the openai SDK ships its own httpx build
    except ImportError:
        import httpx  # type: ignore[no-redef]

    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        best = max(top, key=top.get)
        entry = {
            "token": best,
            "logprob": top[best],
            "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()],
        }
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": best},
                    "finish_reason": "length",
                    "logprobs": {"content": [entry]},
                }
            ],
        }
        return httpx.Response(200, json=body)

    client = openai.OpenAI(
        api_key="k",
        base_url="http://fake.local/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    return OpenAILM("m", client=client, scoring="first_token"), seen


def test_first_token_scoring_reads_top_logprobs_and_marks_what_it_cannot_score_whole():
    lm, seen = first_token_lm({"Pos": -0.3, "positive": -1.0, "negative": -2.0, "very": -3.0})
    response = lm.complete(ask(("positive", "negative", "very negative")))
    assert seen[0]["max_tokens"] == 1 and seen[0]["logprobs"] is True and seen[0]["top_logprobs"] == 20
    assert [c.logprob for c in response.choices] == [-1.0, -2.0, -3.0]
    # One token scored exactly; "very negative" only by its first token, and the choice says so.
    assert [c.finish_reason for c in response.choices] == ["score", "score", "score_first_token"]
    assert response.usage.calls == 1 and response.usage.completion_tokens == 0


def test_first_token_scoring_refuses_labels_it_cannot_rank():
    lm, _ = first_token_lm({"pos": -0.3, "neg": -1.0})
    with pytest.raises(ConfigError, match="begin with the same token 'pos'"):
        lm.complete(ask(("positive", "posh")))
    with pytest.raises(ConfigError, match="cannot rank 'neutral'"):
        lm.complete(ask(("positive", "neutral")))
