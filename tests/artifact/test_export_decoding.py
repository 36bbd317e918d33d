"""export_request pins the decoding a program was scored with, so a server's defaults cannot change it."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from oobleck import ArtifactError, Example, OpenAILM, Predict, context
from oobleck.artifact import export_request, load
from oobleck.optimize import LabeledFewShot

TRAIN = [Example(question="2+2?", answer="4").with_inputs("question")]
SECRET = "org-secret-header-value-42"


def compile_lm(**defaults) -> OpenAILM:
    # Never called: LabeledFewShot picks demos without the LM, but the compile records its decoding.
    return OpenAILM("m", base_url="http://127.0.0.1:9/v1", extra_headers={"X-Org": SECRET}, **defaults)


def compiled(program: Predict, tmp_path, **defaults):
    with context(lm=compile_lm(**defaults)):
        result = LabeledFewShot(k=1).compile(program, trainset=TRAIN)
        result.save(tmp_path / "p.json")
    return result, load(tmp_path / "p.json")


def test_the_compile_lm_decoding_is_pinned(tmp_path):
    program, art = compiled(Predict("question -> answer"), tmp_path, temperature=0.0, max_tokens=64, top_p=0.9)
    assert art.provenance["decoding"] == {"self": {"max_tokens": 64, "temperature": 0.0, "top_p": 0.9}}
    for source in (art, tmp_path / "p.json", program):
        kwargs = export_request(source, question="3+3?", model="gpt-4o-mini")
        assert (kwargs["temperature"], kwargs["max_tokens"], kwargs["top_p"]) == (0.0, 64, 0.9)
        assert kwargs["model"] == "gpt-4o-mini" and "extra_headers" not in kwargs
    assert SECRET not in (tmp_path / "p.json").read_text()  # headers are never recorded


def test_the_predictor_config_wins_over_the_record(tmp_path):
    _, art = compiled(Predict("question -> answer", temperature=0.7), tmp_path, temperature=0.0, max_tokens=64)
    kwargs = export_request(art, question="3+3?", model="m")
    assert (kwargs["temperature"], kwargs["max_tokens"]) == (0.7, 64)


def test_a_context_temperature_is_what_the_compile_ran_with(tmp_path):
    with context(temperature=0.25):
        _, art = compiled(Predict("question -> answer"), tmp_path, temperature=0.0)
    assert export_request(art, question="3+3?", model="m")["temperature"] == 0.25


def test_with_nothing_recorded_the_request_is_greedy(tmp_path):
    Predict("question -> answer").save(tmp_path / "plain.json")
    kwargs = export_request(load(tmp_path / "plain.json"), question="3+3?", model="m")
    assert kwargs["temperature"] == 0.0 and "max_tokens" not in kwargs
    doc = json.loads((tmp_path / "plain.json").read_text())
    doc["provenance"] = {"decoding": {"other": {"temperature": 0.5}}}
    (tmp_path / "other.json").write_text(json.dumps(doc))
    assert export_request(tmp_path / "other.json", question="3+3?", model="m")["temperature"] == 0.0


@pytest.mark.parametrize(
    "record",
    [
        "garbage",
        {"n": 100000},
        {"temperature": "hot"},
        {"extra_headers": {"Authorization": "Bearer attacker"}},
        {"base_url": "http://attacker/v1"},
    ],
)
def test_a_hostile_decoding_record_is_refused(tmp_path, record):
    Predict("question -> answer").save(tmp_path / "plain.json")
    doc = json.loads((tmp_path / "plain.json").read_text())
    doc["provenance"] = {"decoding": {"self": record}}
    (tmp_path / "odd.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="provenance.decoding"):
        export_request(tmp_path / "odd.json", question="3+3?", model="m")


def test_the_pinned_decoding_reaches_the_wire(tmp_path):
    _, art = compiled(Predict("question -> answer"), tmp_path, temperature=0.0, max_tokens=32)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        message = {"role": "assistant", "content": "[[ ## answer ## ]]\n6"}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    client = openai.OpenAI(
        api_key="k", base_url="http://x/v1", http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    reply = client.chat.completions.create(**export_request(art, question="3+3?", model="gpt-4o-mini"))
    body = json.loads(seen[0].content)
    assert (body["temperature"], body["max_tokens"]) == (0.0, 32)
    assert art.parse(reply.choices[0].message.content).answer == "6"
