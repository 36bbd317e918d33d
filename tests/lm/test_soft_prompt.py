"""Soft prompts and label scoring without a model: requests, refusals, artifacts, diff.

The tensors are opaque bytes to everything here (only TransformersLM and oobleck.soft read
them), so these tests use arbitrary bytes; the real-model tests are in tests/soft/.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import pytest

import oobleck
from oobleck import FakeLM, OpenAILM, Predict
from oobleck.artifact import load
from oobleck.cli import main
from oobleck.errors import ArtifactError, ConfigError
from oobleck.lm.base import Capabilities
from oobleck.lm.cached import cache_key
from oobleck.lm.soft_prompt import SoftPrompt, messages_digest
from oobleck.lm.types import LMRequest, Message


class Sentiment(oobleck.Signature):
    """Classify the sentiment."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def soft(data: bytes = b"tensor bytes", **kw) -> SoftPrompt:
    base = {"method": "prompt_tuning", "kind": "embeddings", "num_virtual_tokens": 4, "base_model": {"model": "m"}}
    return SoftPrompt.from_bytes(data, **{**base, **kw})


def test_soft_prompt_identity_is_the_sha_of_its_tensors_and_never_the_bytes():
    a, b = soft(b"one"), soft(b"two")
    assert a.sha256 == hashlib.sha256(b"one").hexdigest()
    request = LMRequest(messages=(Message(role="user", content="hi"),), soft_prompt=a)
    dumped = json.dumps(request.key_data())
    assert a.sha256 in dumped and "one" not in dumped.replace(a.sha256, "")
    ident = {"backend": "transformers", "model": "m"}
    assert cache_key(ident, request) != cache_key(ident, request.model_copy(update={"soft_prompt": b}))
    assert cache_key(ident, request) != cache_key(ident, request.model_copy(update={"soft_prompt": None}))


def test_description_round_trip_checks_the_digest():
    a = soft(b"abc")
    assert SoftPrompt.from_description(a.describe(), b"abc") == a
    with pytest.raises(ConfigError, match="do not match"):
        SoftPrompt.from_description(a.describe(), b"abd")
    with pytest.raises(ConfigError, match="not a soft prompt"):
        SoftPrompt.from_description({"method": "lora"}, b"abc")


def test_covering_prompt_refuses_other_leading_messages():
    head = [Message(role="system", content="Classify.")]
    prompt = soft(covers=1, covers_sha256=messages_digest(head))
    rest = [Message(role="user", content="x")]
    assert prompt.split(head + rest) == tuple(rest)
    with pytest.raises(ConfigError, match="instructions or demos changed"):
        prompt.split([Message(role="system", content="Other.")] + rest)


def test_score_mode_needs_one_literal_output():
    with pytest.raises(ConfigError, match="Literal, Enum or bool"):
        Predict("question -> answer", mode="score")
    with pytest.raises(ConfigError, match="mode must be"):
        Predict(Sentiment, mode="rank")  # type: ignore[arg-type]


def test_generate_only_backends_refuse_score_mode_and_soft_prompts_before_calling():
    lm = FakeLM([{"label": "positive"}])
    with pytest.raises(ConfigError, match="scores completions"):
        Predict(Sentiment, lm=lm, mode="score")(text="good")
    with pytest.raises(ConfigError, match="cannot apply"):
        Predict(Sentiment, lm=lm, soft_prompt=soft())(text="good")
    assert lm.requests == []


def test_openai_refuses_a_soft_prompt_program_clearly():
    lm = OpenAILM("smollm2", base_url="http://127.0.0.1:9/v1", max_retries=0)
    program = Predict(Sentiment, lm=lm, soft_prompt=soft())
    with pytest.raises(ConfigError, match="soft prompt.*OpenAILM cannot apply.*TransformersLM"):
        program(text="good")
    # A request built by hand is refused by the backend itself, not retried as a failure.
    request = LMRequest(messages=(Message(role="user", content="hi"),), soft_prompt=soft())
    with pytest.raises(ConfigError, match="cannot apply a soft prompt"):
        lm.complete(request)


def test_score_request_lists_every_label_as_the_adapter_writes_it():
    class Scorer(FakeLM):
        capabilities = Capabilities(scoring=True, soft_prompts=True)

    p = Predict(Sentiment, lm=Scorer(), mode="score", soft_prompt=soft(), temperature=0.7)
    request = p.request(text="good")
    assert request.score == ("[[ ## label ## ]]\npositive", "[[ ## label ## ]]\nnegative")
    assert request.temperature is None and request.stop is None
    assert request.soft_prompt == p.soft_prompt


def test_artifact_keeps_mode_and_soft_prompt_in_a_checked_side_file(tmp_path):
    p = Predict(Sentiment, mode="score", soft_prompt=soft(b"\x00\x01 vectors"))
    path = p.save(tmp_path / "prog.json") or tmp_path / "prog.json"
    doc = json.loads(path.read_text())
    described = doc["predictors"][0]["extra"]["soft_prompt"]
    side = tmp_path / f"prog.{described['file']}"
    assert side.read_bytes() == b"\x00\x01 vectors"
    assert doc["files"][0]["sha256"] == described["sha256"] == hashlib.sha256(b"\x00\x01 vectors").hexdigest()
    loaded = load(path)
    predictor = loaded.predictors["self"]
    assert predictor.mode == "score" and predictor.soft_prompt == p.soft_prompt
    # attached to a program of the same shape, by name
    fresh = Predict(Sentiment)
    fresh.load(path)
    assert fresh.mode == "score" and fresh.soft_prompt == p.soft_prompt
    side.write_bytes(b"\x00\x02 vectors")
    with pytest.raises(ArtifactError, match="does not match"):
        load(path)


def test_two_predictors_may_share_one_soft_prompt(tmp_path):
    class Two(oobleck.Module):
        def __init__(self, prompt):
            self.a = Predict(Sentiment, soft_prompt=prompt)
            self.b = Predict(Sentiment, soft_prompt=prompt)

        def forward(self, text):
            return self.b(text=self.a(text=text).label)

    shared = soft(b"shared")
    Two(shared).save(tmp_path / "two.json")
    assert [p.soft_prompt for p in Two(None).load(tmp_path / "two.json").predictors()] == [shared, shared]


def test_diff_shows_a_changed_soft_prompt(tmp_path, capsys):
    Predict(Sentiment, soft_prompt=soft(b"before")).save(tmp_path / "a.json")
    Predict(Sentiment, soft_prompt=soft(b"after", norm=2.5)).save(tmp_path / "b.json")
    code = main(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert code == 0 or code == 1
    assert "soft_prompt" in out
    assert hashlib.sha256(b"before").hexdigest()[:16] in out and hashlib.sha256(b"after").hexdigest()[:16] in out
    Predict(Sentiment).save(tmp_path / "c.json")
    main(["diff", str(tmp_path / "a.json"), str(tmp_path / "c.json")])
    assert "soft_prompt" in capsys.readouterr().out


def test_artifact_with_a_hostile_soft_prompt_record_is_refused(tmp_path):
    Predict(Sentiment, soft_prompt=soft(b"x")).save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    doc["predictors"][0]["extra"]["soft_prompt"]["file"] = "../../etc/passwd"
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError):
        load(tmp_path / "p.json")
    doc["predictors"][0]["extra"] = {"mode": "score", "eval": "__import__('os')"}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="unknown predictor state"):
        load(tmp_path / "p.json")


def test_transformers_lm_refuses_what_it_cannot_do_before_loading_anything():
    from oobleck.lm.transformers import TransformersLM

    lm = TransformersLM()  # nothing is loaded or converted until the first call
    request = LMRequest(messages=(Message(role="user", content="hi"),))
    with pytest.raises(ConfigError, match="JSON schema"):
        lm.complete(request.model_copy(update={"response_format": {"name": "x", "schema": {}}}))
    with pytest.raises(ConfigError, match="no backend-specific parameters"):
        lm.complete(request.model_copy(update={"extra": {"top_k": 3}}))
    with pytest.raises(ConfigError, match="unknown decoding default"):
        TransformersLM(beam_width=4)
    assert lm._loaded is None


def test_transformers_lm_refuses_tools_it_would_drop():
    # TransformersLM has no native tool calling (capabilities.tool_calls is False) but took a
    # request with tools and answered it in text as if they had never been sent.
    from oobleck.lm.transformers import TransformersLM

    lm = TransformersLM()
    tool = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
    request = LMRequest(messages=(Message(role="user", content="hi"),), tools=(tool,), tool_choice="required")
    with pytest.raises(ConfigError, match="tool"):
        lm.complete(request)
    assert lm._loaded is None
