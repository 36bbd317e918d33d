"""Keys go only where they belong (the Authorization header): never into artifacts, caches, traces or logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from scripted_server import ScriptedServer, completion, reply

from oobleck import Cache, CachedLM, LMRequest, LMResponseError, Message, OpenAILM, Predict, trace
from oobleck.artifact import load

KEY = "sk-live-verysecret-0123456789abcdef"
HEADER_SECRET = "org-secret-header-value-42"


def everything_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_keys_stay_out_of_artifacts_caches_traces_and_logs(tmp_path, caplog):
    server = ScriptedServer(
        [
            reply(200, completion('{"answer": "Paris"}')),  # JSON: the default adapter on a structured-output backend
            reply(500, {"error": {"message": f"upstream rejected key {KEY}"}}),
            reply(401, {"error": {"message": f"bad key {KEY}"}}),
        ],
        repeat_last=True,
    )
    try:
        lm = OpenAILM(
            "m", base_url=server.url, api_key=KEY, max_retries=1, backoff=0.001, extra_headers={"X-Org": HEADER_SECRET}
        )
        cached = CachedLM(lm, cache=Cache(tmp_path / "cache"))
        program = Predict("question -> answer", lm=cached)
        with caplog.at_level(logging.DEBUG), trace() as t:
            assert program(question="Capital of France?").answer == "Paris"
            with pytest.raises(LMResponseError) as info:
                program(question="and of Spain?")
        program.save(tmp_path / "program.json")
        loaded = load(tmp_path / "program.json", lm=cached)
        cached.cache.close()

        places = {
            "artifact": (tmp_path / "program.json").read_bytes(),
            "cache": everything_under(tmp_path / "cache"),
            "trace": repr(t.entries).encode() + json.dumps([e.messages for e in t.entries], default=str).encode(),
            "logs": caplog.text.encode(),
            "error": str(info.value).encode(),
            "identity and repr": (json.dumps(lm.identity) + repr(lm) + repr(cached) + repr(loaded)).encode(),
        }
        for where, data in places.items():
            assert KEY.encode() not in data, f"the API key reached the {where}"
            assert HEADER_SECRET.encode() not in data, f"a secret header reached the {where}"
        # ...and it did reach the one place it belongs.
        assert f"Bearer {KEY}".encode() in server.seen[0].request
        assert HEADER_SECRET.encode() in server.seen[0].request
        assert places["cache"], "the cache wrote nothing to disk; the check above would prove nothing"
    finally:
        server.close()


def test_a_key_echoed_in_an_error_body_of_a_200_answer_is_masked(caplog):
    # Errors the server sends with HTTP 200 ({"error": ...} instead of choices) were raised
    # as they were read, past the scrubbing that HTTP error statuses get.
    server = ScriptedServer([reply(200, {"error": {"message": f"upstream rejected key {KEY}", "code": 500}})])
    try:
        lm = OpenAILM("m", base_url=server.url, api_key=KEY, max_retries=1, backoff=0.001)
        with caplog.at_level(logging.DEBUG), pytest.raises(LMResponseError) as info:
            lm.complete(LMRequest(messages=(Message(role="user", content="hi"),)))
        assert "upstream rejected key" in str(info.value)
        assert KEY not in str(info.value) and KEY not in caplog.text
    finally:
        server.close()
