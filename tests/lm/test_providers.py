"""LMs by name: each provider's request shape and key, checked on the wire (httpx.MockTransport)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

import oobleck
from oobleck import Cache, CachedLM, ConfigError, LMResponseError, Predict
from oobleck.lm import Capabilities, LMRequest, Message
from oobleck.lm.providers import PROVIDERS, parse_spec

ENV_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OLLAMA_HOST",
    "VLLM_API_KEY",
)
COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
REQUEST = LMRequest(messages=(Message(role="user", content="hi"),), temperature=0.0, max_tokens=8)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


class Wire:
    """An httpx client whose transport records each request and answers ``answer``."""

    def __init__(self, status: int = 200, answer: object = COMPLETION) -> None:
        self.seen: list[httpx.Request] = []
        self.status, self.answer = status, answer
        self.client = httpx.Client(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(self.status, json=self.answer)

    @property
    def body(self) -> dict:
        return json.loads(self.seen[-1].content)


@pytest.mark.parametrize(
    ("spec", "env", "url", "key"),
    [
        (
            "openai/gpt-4o-mini",
            {"OPENAI_API_KEY": "sk-openai-1234"},
            "https://api.openai.com/v1/chat/completions",
            "sk-openai-1234",
        ),
        (
            "anthropic/claude-3-5-haiku-latest",
            {"ANTHROPIC_API_KEY": "sk-ant-5678"},
            "https://api.anthropic.com/v1/chat/completions",
            "sk-ant-5678",
        ),
        (
            "gemini/gemini-2.0-flash",
            {"GEMINI_API_KEY": "gem-key-9012"},
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
            "gem-key-9012",
        ),
        (
            "gemini/gemini-2.0-flash",
            {"GOOGLE_API_KEY": "google-key-3456"},
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
            "google-key-3456",
        ),
        ("ollama/llama3.2:1b", {}, "http://localhost:11434/v1/chat/completions", "unused"),
        ("ollama/llama3.2:1b", {"OLLAMA_HOST": "10.0.0.5:9999"}, "http://10.0.0.5:9999/v1/chat/completions", "unused"),
        (
            "vllm/Qwen/Qwen2.5-1.5B-Instruct@http://gpu.example:8001/v1",
            {"VLLM_API_KEY": "vllm-token-77"},
            "http://gpu.example:8001/v1/chat/completions",
            "vllm-token-77",
        ),
        ("vllm/Qwen/Qwen2.5-1.5B-Instruct", {}, "http://localhost:8000/v1/chat/completions", "unused"),
        ("http://127.0.0.1:8080/v1", {}, "http://127.0.0.1:8080/v1/chat/completions", "unused"),
        (
            "openai:gpt-4o-mini",
            {"OPENAI_API_KEY": "sk-openai-1234"},
            "https://api.openai.com/v1/chat/completions",
            "sk-openai-1234",
        ),
    ],
)
def test_each_provider_sends_to_its_endpoint_with_its_key(monkeypatch, spec, env, url, key):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wire = Wire()
    lm = oobleck.LM(spec, http_client=wire.client, max_retries=0)
    assert lm.complete(REQUEST).text == "hello"
    sent = wire.seen[-1]
    assert (sent.method, str(sent.url)) == ("POST", url)
    assert sent.headers["authorization"] == f"Bearer {key}"
    expected_model = parse_spec(spec).model
    assert wire.body["model"] == expected_model
    assert wire.body["messages"] == [{"role": "user", "content": "hi"}]
    assert (wire.body["temperature"], wire.body["max_tokens"]) == (0.0, 8)
    # preview() tells exactly what complete() sent, with the key masked
    preview = lm.preview(REQUEST)
    assert preview["url"] == url and preview["json"] == wire.body
    assert preview["headers"]["Authorization"] == "Bearer ***"


def test_model_names_keep_slashes_colons_and_at_signs():
    assert parse_spec("vllm/Qwen/Qwen2.5-7B@http://h:1/v1").model == "Qwen/Qwen2.5-7B"
    assert parse_spec("ollama/llama3.2:1b").model == "llama3.2:1b"
    vertex = parse_spec("anthropic/claude-3-5-sonnet@20240620")
    assert vertex.model == "claude-3-5-sonnet@20240620" and vertex.base_url is None
    local = parse_spec("local:/models/q.gguf")
    assert (local.kind, local.path) == ("local", "/models/q.gguf")


def test_each_provider_declares_what_its_endpoint_honours(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k-anthropic")
    monkeypatch.setenv("GEMINI_API_KEY", "k-gemini")
    monkeypatch.setenv("OPENAI_API_KEY", "k-openai")
    anthropic = oobleck.LM("anthropic/claude-x")
    assert anthropic.capabilities == Capabilities()  # response_format and logprobs ignored, n=1 only
    assert oobleck.LM("gemini/g").capabilities == Capabilities(json_schema=True)
    assert oobleck.LM("openai/m").capabilities.logprobs
    custom = Capabilities(json_schema=True)
    assert oobleck.LM("anthropic/claude-x", capabilities=custom).capabilities is custom
    # so the default adapter asks Anthropic for no JSON schema it would ignore
    assert Predict("question -> answer", lm=anthropic).request(question="q").response_format is None


def test_openai_base_url_is_honoured(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.example:4000/v1")
    wire = Wire()
    lm = oobleck.OpenAILM("gpt-4o-mini", http_client=wire.client, max_retries=0)  # no key needed off OpenAI
    lm.complete(REQUEST)
    assert str(wire.seen[-1].url) == "http://proxy.example:4000/v1/chat/completions"
    assert lm.identity["endpoint"].startswith("http://proxy.example:4000/v1")
    named = oobleck.LM("openai/gpt-4o-mini", http_client=wire.client, max_retries=0)
    named.complete(REQUEST)
    assert str(wire.seen[-1].url) == "http://proxy.example:4000/v1/chat/completions"
    # an explicit base_url still wins
    explicit = oobleck.LM("openai/gpt-4o-mini", base_url="http://other:1/v1", http_client=wire.client)
    explicit.complete(REQUEST)
    assert str(wire.seen[-1].url) == "http://other:1/v1/chat/completions"


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("openai/gpt-4o-mini", ["OPENAI_API_KEY"]),
        ("anthropic/claude-x", ["ANTHROPIC_API_KEY"]),
        ("gemini/gemini-2.0-flash", ["GEMINI_API_KEY", "GOOGLE_API_KEY"]),
    ],
)
def test_a_missing_key_names_the_variable_to_set(spec, names):
    with pytest.raises(ConfigError) as info:
        oobleck.LM(spec)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("mistral/large", "unknown LM provider 'mistral'"),
        ("gpt-4o-mini", "is not understood"),
        ("openai/", "names no model"),
        ("vllm/m@ftp://h/v1", "not an http(s) URL"),
        ("vllm/@http://h:1/v1", "names no model"),
        ("local:", "needs a GGUF file"),
        ("http://user:pw@h:1/v1", "no credentials in the URL"),
        ("https://", "not an http(s) URL"),
    ],
)
def test_bad_specs_are_config_errors_that_list_the_forms(spec, says):
    with pytest.raises(ConfigError) as info:
        oobleck.LM(spec)
    assert says in str(info.value)


def test_a_bad_spec_message_lists_the_providers():
    with pytest.raises(ConfigError) as info:
        oobleck.LM("mistral/large")
    for name in PROVIDERS:
        assert name in str(info.value)


def test_the_openai_key_never_goes_to_ollama_or_a_bare_url(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-stay-home")
    for spec in ("ollama/llama3.2", "http://127.0.0.1:8080/v1", "vllm/m"):
        wire = Wire()
        oobleck.LM(spec, http_client=wire.client, max_retries=0).complete(REQUEST)
        assert "sk-openai-must-stay-home" not in wire.seen[-1].headers["authorization"], spec


def test_local_spec_builds_the_embedded_model():
    from oobleck.lm.local import LocalLM

    lm = oobleck.LM("local", max_tokens=16)
    assert isinstance(lm, LocalLM) and lm.defaults["max_tokens"] == 16  # the model loads on first call only
    with pytest.raises(ConfigError, match="no GGUF model file"):
        oobleck.LM("local:/no/such/model.gguf")
    with pytest.raises(ConfigError, match="takes no base_url"):
        oobleck.LM("local", base_url="http://h:1/v1")


KEY = "sk-ant-api03-verysecret-0123456789"


def test_a_provider_key_never_reaches_reprs_logs_caches_artifacts_or_errors(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    ok = Wire(
        answer={
            **COMPLETION,
            "choices": [{**COMPLETION["choices"][0], "message": {"content": "[[ ## answer ## ]]\nParis"}}],
        }
    )
    lm = oobleck.LM("anthropic/claude-x", http_client=ok.client, max_retries=0)
    cached = CachedLM(lm, cache=Cache(tmp_path / "cache"))
    program = Predict("question -> answer", lm=cached)
    with caplog.at_level(logging.DEBUG):
        assert program(question="Capital of France?").answer == "Paris"
        bad = oobleck.LM(
            "anthropic/claude-x",
            http_client=Wire(401, {"error": {"message": f"invalid x-api-key {KEY}"}}).client,
            max_retries=0,
        )
        with pytest.raises(LMResponseError) as refused:
            bad.complete(REQUEST)
        failing = oobleck.LM(
            "anthropic/claude-x",
            http_client=Wire(500, {"error": {"message": f"upstream saw {KEY}"}}).client,
            max_retries=0,
        )
        with pytest.raises(LMResponseError) as failed:
            failing.complete(REQUEST)
    program.save(tmp_path / "program.json")
    cached.cache.close()
    places = {
        "repr and identity": repr(lm) + repr(cached) + json.dumps(lm.identity) + str(lm.settings),
        "preview": json.dumps(lm.preview(REQUEST)),
        "logs": caplog.text,
        "errors": str(refused.value) + str(failed.value) + repr(failed.value),
        "artifact": (tmp_path / "program.json").read_text(),
        "cache": b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()).decode("latin-1"),
    }
    for where, text in places.items():
        assert KEY not in text, f"the key reached the {where}"
    assert places["cache"] and places["logs"], "nothing was written: the checks above would prove nothing"
    assert ok.seen[0].headers["authorization"] == f"Bearer {KEY}"  # it went where it belongs
