"""`oobleck serve`: a real HTTP server on 127.0.0.1 in front of a loaded artifact."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest
from qa_program import TwoStep
from watchdog import serving

from oobleck import FakeLM, Predict, context
from oobleck.artifact import load
from oobleck.errors import LMTimeoutError
from oobleck.serve import make_server


def answer_lm(request):
    question = request.messages[-1].content.split("\n")[1]
    if "timeout" in question:
        raise LMTimeoutError("the model took too long")
    if "garbled" in question:
        return "[[ ## something_else ## ]]\nno answer marker"
    return f"[[ ## reasoning ## ]]\nbecause\n\n[[ ## answer ## ]]\nanswer to {question}\n\n[[ ## ok ## ]]\ntrue"


def _start(art) -> Iterator[tuple[str, int]]:
    with serving(make_server(art, port=0)) as address:
        yield address


@pytest.fixture
def qa_server(tmp_path) -> Iterator[tuple[str, int]]:
    Predict("question -> answer", demos=[{"question": "q", "answer": "a"}]).save(tmp_path / "qa.json")
    with context(lm=FakeLM(answer_lm)):  # the server copies this context into every request
        art = load(tmp_path / "qa.json")
        yield from _start(art)


def request(address, method, path, body=None, raw=None, headers=None):
    conn = http.client.HTTPConnection(*address, timeout=10)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = json.loads(resp.read() or b"null")
    conn.close()
    return resp.status, payload, dict(resp.getheaders())


def test_binds_localhost_and_reports_health(qa_server):
    assert qa_server[0] == "127.0.0.1"
    status, body, _ = request(qa_server, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["predictors"] == ["self"]
    status, body, _ = request(qa_server, "GET", "/")
    assert body["inputs"] == ["question"] and body["predictors"]["self"]["outputs"] == ["answer"]


def test_post_inputs_returns_outputs(qa_server):
    status, body, headers = request(qa_server, "POST", "/", {"question": "2+2?"})
    assert status == 200 and body == {"answer": "answer to 2+2?"}
    assert json.loads(headers["X-Oobleck-Usage"])["calls"] == 1


def test_concurrent_requests(qa_server):
    results = {}

    def one(i):
        results[i] = request(qa_server, "POST", "/", {"question": f"q{i}"})[1]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: {"answer": f"answer to q{i}"} for i in range(12)}


@pytest.mark.parametrize(
    ("kwargs", "status", "kind"),
    [
        ({"raw": b"{not json"}, 400, "InvalidJSON"),
        ({"body": ["a", "list"]}, 400, "BadRequest"),
        ({"raw": b""}, 400, "BadRequest"),
        ({"body": {"wrong": "x"}}, 422, "InputError"),
        ({"body": {"question": "q", "extra": 1}}, 422, "InputError"),
        ({"body": {"question": "timeout please"}}, 504, "LMTimeoutError"),
        ({"body": {"question": "garbled"}}, 502, "ParseError"),
    ],
)
def test_bad_requests_get_json_errors(qa_server, kwargs, status, kind):
    got, body, _ = request(qa_server, "POST", "/", **kwargs)
    assert got == status and body["error"]["type"] == kind and body["error"]["message"]


def test_unknown_paths_methods_and_sizes(qa_server):
    assert request(qa_server, "GET", "/nope")[0] == 404
    assert request(qa_server, "POST", "/predictors/nope", {"question": "q"})[0] == 404
    assert request(qa_server, "PUT", "/", {"question": "q"})[0] == 405
    conn = http.client.HTTPConnection(*qa_server, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Content-Length", str(2 * 1024 * 1024))  # announced, never sent: refused before reading
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["type"] == "PayloadTooLarge"
    conn.close()


def test_user_program_serves_its_predictors(tmp_path):
    TwoStep().save(tmp_path / "two.json")
    art = load(tmp_path / "two.json", lm=FakeLM(answer_lm))
    for address in _start(art):
        status, body, _ = request(address, "POST", "/", {"question": "q"})
        assert status == 404 and body["error"]["type"] == "NotRunnable" and "/predictors/" in body["error"]["message"]
        status, body, _ = request(address, "POST", "/predictors/check", {"question": "q", "answer": "a"})
        assert status == 200 and body == {"ok": True}
        status, body, _ = request(address, "POST", "/predictors/generate_answer.predict", {"question": "q"})
        assert body == {"reasoning": "because", "answer": "answer to q"}


def test_no_lm_is_a_server_error(tmp_path):
    Predict("question -> answer").save(tmp_path / "qa.json")
    for address in _start(load(tmp_path / "qa.json")):
        status, body, _ = request(address, "POST", "/", {"question": "q"})
        assert status == 500 and body["error"]["type"] == "ConfigError"
