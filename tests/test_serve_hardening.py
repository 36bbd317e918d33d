"""`oobleck serve` fit to embed: backlog, timeouts, token, bounded concurrency, JSON for every status."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from watchdog import serving

from oobleck import ConfigError, FakeLM, Predict, context
from oobleck.artifact import load
from oobleck.lm.base import BaseLM
from oobleck.lm.types import Choice, LMRequest, LMResponse, Usage
from oobleck.serve import is_loopback, make_server

TOKEN = "s3cret-token-for-tests"


def answer(request):
    question = request.messages[-1].content.split("\n")[1]
    return f"[[ ## answer ## ]]\nanswer to {question}"


@pytest.fixture
def artifact(tmp_path):
    Predict("question -> answer").save(tmp_path / "qa.json")
    return load(tmp_path / "qa.json")


@contextlib.contextmanager
def start(art, lm=None, **options) -> Iterator[tuple[str, int]]:
    with context(lm=lm or FakeLM(answer)):
        server = make_server(art, port=0, **options)
    with serving(server) as address:
        yield address


def post(address, body, headers=None, timeout=30):
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    conn.request(
        "POST", "/", body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    conn.close()
    return resp.status, payload, dict(resp.getheaders())


def raw_exchange(address, data: bytes, timeout=10) -> bytes:
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def json_body(raw: bytes) -> dict:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.9.9.9")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_beyond_loopback_needs_a_token_or_a_loud_opt_out(artifact):
    with pytest.raises(ConfigError, match="token"):
        make_server(artifact, host="0.0.0.0", port=0)
    with pytest.warns(UserWarning, match="without a token"):
        make_server(artifact, host="0.0.0.0", port=0, allow_no_token=True).server_close()
    make_server(artifact, host="0.0.0.0", port=0, token=TOKEN).server_close()
    with pytest.raises(ConfigError):
        make_server(artifact, port=0, token="  ")


def test_bearer_token_guards_everything_but_health(artifact):
    with start(artifact, token=TOKEN) as address:
        status, body, headers = post(address, {"question": "q"})
        assert status == 401 and body["error"]["type"] == "Unauthorized" and "Bearer" in headers["WWW-Authenticate"]
        assert post(address, {"question": "q"}, {"Authorization": "Bearer wrong"})[0] == 401
        status, body, _ = post(address, {"question": "q"}, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body == {"answer": "answer to q"}
        assert (
            json_body(raw_exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))["error"]["type"]
            == "Unauthorized"
        )
        assert (
            json_body(raw_exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))["status"]
            == "ok"
        )


@pytest.mark.parametrize(
    ("raw", "status", "kind"),
    [
        (b"NONSENSE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "MethodNotAllowed"),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "MethodNotAllowed"),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400, "BadRequest"),
        (b"GARBAGE\r\n\r\n", 400, "BadRequest"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "URITooLong"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431, "HeadersTooLarge"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n", 400, "BadRequest"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400, "BadRequest"),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411, "LengthRequired"),
        (
            b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5008\r\n\r\n{"question": ' + b"1" * 5000 + b"}",
            400,
            "InvalidJSON",
        ),
    ],
)
def test_client_mistakes_get_4xx_json(artifact, raw, status, kind):
    with start(artifact) as address:
        answer_ = raw_exchange(address, raw)
        assert answer_.startswith(f"HTTP/1.1 {status}".encode()) or answer_.startswith(f"HTTP/1.0 {status}".encode()), (
            answer_[:80]
        )
        assert json_body(answer_)["error"]["type"] == kind


def test_stalled_clients_are_dropped_and_do_not_hold_the_server(artifact):
    with start(artifact, conn_timeout=0.3) as address:
        silent = socket.create_connection(address, timeout=10)
        silent.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        short = socket.create_connection(address, timeout=10)
        short.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"que')  # body never finished
        assert silent.recv(1000) == b""  # closed by the server
        got = b"".join(iter(lambda: short.recv(10000), b""))
        assert got.startswith(b"HTTP/1.1 408") and json_body(got)["error"]["type"] == "RequestTimeout"
        silent.close()
        short.close()
        assert post(address, {"question": "still here"})[1] == {"answer": "answer to still here"}


def test_in_flight_programs_are_bounded_and_overflow_gets_503(artifact):
    release = threading.Event()
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow(request):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        release.wait(10)
        with lock:
            active -= 1
        return answer(request)

    class Blocking(BaseLM):
        def complete(self, request: LMRequest) -> LMResponse:
            return LMResponse(choices=(Choice(text=slow(request)),), usage=Usage(calls=1))

    with start(artifact, lm=Blocking(), max_inflight=2, queue_timeout=0.3) as address:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(post, address, {"question": f"q{i}"}) for i in range(6)]
            threading.Timer(1.5, release.set).start()
            results = [f.result() for f in futures]
        statuses = sorted(r[0] for r in results)
        assert peak == 2
        assert statuses == [200, 200, 503, 503, 503, 503]
        assert all(r[1]["error"]["type"] == "Busy" and r[2]["Retry-After"] == "1" for r in results if r[0] == 503)


def test_connections_over_the_limit_get_an_immediate_503(artifact):
    with start(artifact, max_connections=2) as address:
        idle = [socket.create_connection(address, timeout=10) for _ in range(2)]
        extra = raw_exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.startswith(b"HTTP/1.1 503") and json_body(extra)["error"]["type"] == "Busy"
        for s in idle:
            s.close()


def test_a_burst_of_200_clients_is_fully_answered(artifact):
    with start(artifact) as address:
        barrier = threading.Barrier(200)

        def one(i: int):
            barrier.wait(30)
            return post(address, {"question": f"q{i}"}, timeout=60)

        with ThreadPoolExecutor(200) as pool:
            results = list(pool.map(one, range(200)))
        assert [r[0] for r in results] == [200] * 200
        assert [r[1]["answer"] for r in results] == [f"answer to q{i}" for i in range(200)]
