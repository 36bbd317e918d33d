"""Server-sent events: `POST /stream` and `/predictors/<name>/stream` through the ASGI test client and uvicorn."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
from fastapi.testclient import TestClient
from watchdog import serving

from oobleck import ChainOfThought, FakeLM, Module, Predict, asgi_app, context
from oobleck.errors import LMTimeoutError
from oobleck.serve import make_server


def events(text: str) -> list[tuple[str, dict]]:
    """(event, data) pairs of a text/event-stream body."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def cot_lm() -> FakeLM:
    return FakeLM([{"reasoning": "Paris is the capital of France.", "answer": "Paris"}], cycle=True, stream_chunk=3)


def test_stream_sends_each_field_in_order_then_the_prediction():
    client = TestClient(asgi_app(ChainOfThought("question -> answer"), lm=cot_lm()))
    with client.stream("POST", "/stream", json={"question": "Capital of France?"}) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        got = events(reply.read().decode())
    kinds = [kind for kind, _ in got]
    assert kinds[-1] == "prediction" and set(kinds[:-1]) == {"chunk"} and len(kinds) > 4
    chunks = [data for kind, data in got if kind == "chunk"]
    fields = [c["field"] for c in chunks]
    assert fields.index("answer") > max(i for i, f in enumerate(fields) if f == "reasoning")  # reasoning first
    assert "".join(c["text"] for c in chunks if c["field"] == "reasoning") == "Paris is the capital of France."
    assert "".join(c["text"] for c in chunks if c["field"] == "answer") == "Paris"
    assert all(len(c["text"]) <= 3 for c in chunks)  # the LM's pieces, not the whole answer at once
    final = got[-1][1]
    assert final["outputs"] == {"reasoning": "Paris is the capital of France.", "answer": "Paris"}
    assert final["usage"]["calls"] == 1


def test_a_retry_that_rewrites_a_streamed_field_is_a_replacing_chunk_event():
    lm = FakeLM([{"reasoning": "first try", "answer": "many"}, {"reasoning": "two twos", "answer": 4}], stream_chunk=3)
    client = TestClient(asgi_app(ChainOfThought("question -> answer: int", max_retries=1), lm=lm))
    with client.stream("POST", "/stream", json={"question": "2+2?"}) as reply:
        got = events(reply.read().decode())
    text = ""
    for kind, data in got:
        if kind == "chunk" and data["field"] == "reasoning":
            text = data["text"] if data.get("replace") else text + data["text"]
    assert any(data.get("replace") for _, data in got) and text == "two twos"
    assert got[-1][1]["outputs"] == {"reasoning": "two twos", "answer": 4}


def test_a_predictor_streams_on_its_own_path_and_is_in_the_schema():
    client = TestClient(asgi_app(ChainOfThought("question -> answer"), lm=cot_lm()))
    with client.stream("POST", "/predictors/predict/stream", json={"question": "q"}) as reply:
        got = events(reply.read().decode())
    assert got[-1] == ("prediction", {"outputs": {"reasoning": "Paris is the capital of France.", "answer": "Paris"},
                                      "usage": got[-1][1]["usage"]})  # fmt: skip
    assert {c["predictor"] for kind, c in got if kind == "chunk"} == {"predict"}
    schema = client.get("/openapi.json").json()
    answer = schema["paths"]["/stream"]["post"]["responses"]["200"]
    assert "text/event-stream" in answer["content"] and "prediction" in answer["description"]


def answer_or_fail(request):
    question = request.messages[-1].content.split("\n")[1]
    if "timeout" in question:
        raise LMTimeoutError("the model took too long")
    return f"[[ ## answer ## ]]\nanswer to {question}"


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"question": "timeout please"}, 504, "LMTimeoutError"),  # fails before the first chunk
        ({"nope": "x"}, 422, "InputError"),
        (["a list"], 400, "BadRequest"),
    ],
)
def test_failures_before_anything_streams_are_plain_json_errors(body, status, kind):
    client = TestClient(asgi_app(Predict("question -> answer"), lm=FakeLM(answer_or_fail)))
    reply = client.post("/stream", json=body)
    assert reply.status_code == status and reply.json()["error"]["type"] == kind


def test_a_failure_after_streaming_began_is_an_error_event():
    # The answer breaks after 8 characters: the first pieces went out with a 200, then the error.
    lm = FakeLM(["[[ ## answer ## ]]\nParis is lovely"], cycle=True, stream_chunk=2, drop_stream_after=24)
    client = TestClient(asgi_app(Predict("question -> answer", max_retries=0), lm=lm))
    with client.stream("POST", "/stream", json={"question": "q"}) as reply:
        assert reply.status_code == 200
        got = events(reply.read().decode())
    assert got[0][0] == "chunk" and got[-1][0] == "error"
    assert got[-1][1]["status"] == 502 and got[-1][1]["error"]["type"] == "LMConnectionError"


def test_streams_hold_a_slot_and_give_it_back():
    client = TestClient(asgi_app(Predict("question -> answer"), lm=FakeLM(answer_or_fail), max_concurrency=1))
    for i in range(3):  # with one slot, a stream that kept it would make the next request wait, then 503
        with client.stream("POST", "/stream", json={"question": f"q{i}"}) as reply:
            assert events(reply.read().decode())[-1][1]["outputs"] == {"answer": f"answer to q{i}"}
    assert client.post("/", json={"question": "after"}).json() == {"answer": "answer to after"}


def test_events_over_a_real_socket():
    lm = FakeLM(["[[ ## answer ## ]]\nfirst part second part"], cycle=True, stream_chunk=10)
    with context(lm=lm):
        server = make_server(Predict("question -> answer"), port=0)
    with serving(server) as address:
        conn = http.client.HTTPConnection(*address, timeout=30)
        conn.request(
            "POST", "/stream", body=json.dumps({"question": "q"}), headers={"Content-Type": "application/json"}
        )
        reply = conn.getresponse()
        assert reply.status == 200 and reply.getheader("Content-Type").startswith("text/event-stream")
        body = reply.read().decode()
        conn.close()
    got = events(body)
    chunks = [c["text"] for kind, c in got if kind == "chunk"]
    assert len(chunks) > 1 and "".join(chunks) == "first part second part"
    assert got[-1][1]["outputs"] == {"answer": "first part second part"}


class SlowSecondStep(Module):
    """Answers at once, then takes three seconds before a second step."""

    def __init__(self):
        self.first = Predict("question -> answer")
        self.second = Predict("question -> answer")

    def forward(self, question):
        draft = self.first(question=question)
        time.sleep(3.0)
        return self.second(question=draft.answer)


def test_a_client_that_leaves_mid_stream_gives_its_slot_back():
    lm = FakeLM(["[[ ## answer ## ]]\nParis is the answer"], cycle=True, stream_chunk=4)
    with context(lm=lm):
        server = make_server(SlowSecondStep(), port=0, max_inflight=1, queue_timeout=1.0)
    with serving(server) as address:
        sock = socket.create_connection(address, timeout=10)
        body = json.dumps({"question": "q"}).encode()
        sock.sendall(
            b"POST /stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        got = b""
        while b"event: chunk" not in got:  # the first step streams; the second is 3 s away
            piece = sock.recv(65536)
            assert piece, got
            got += piece
        sock.close()  # the client leaves
        time.sleep(0.3)
        started = time.monotonic()
        status, answer = post(address, "/predictors/first", {"question": "next"})
        assert status == 200 and answer == {"answer": "Paris is the answer"}
        assert time.monotonic() - started < 1.0  # the slot was free, not held until the 3 s step ended


def post(address, path, body):
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = json.loads(reply.read())
    conn.close()
    return reply.status, data
