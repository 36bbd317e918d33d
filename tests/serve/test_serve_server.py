"""`oobleck serve`'s server on real sockets (uvicorn): loopback, parse errors, slow and hostile clients."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from watchdog import serving

from oobleck import ConfigError, FakeLM, Predict, context
from oobleck.artifact import load
from oobleck.serve import _server, is_loopback, make_server

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
    return resp.status, payload, resp.headers


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


def test_binds_loopback_and_answers(artifact):
    with start(artifact) as address:
        assert address[0] == "127.0.0.1"
        status, body, headers = post(address, {"question": "2+2?"})
        assert status == 200 and body == {"answer": "answer to 2+2?"}
        assert json.loads(headers["X-Oobleck-Usage"])["calls"] == 1


def test_beyond_loopback_needs_a_token_or_a_loud_opt_out(artifact):
    with pytest.raises(ConfigError, match="token"):
        make_server(artifact, host="0.0.0.0", port=0)
    with pytest.warns(UserWarning, match="without a token"):
        make_server(artifact, host="0.0.0.0", port=0, allow_no_token=True).server_close()
    make_server(artifact, host="0.0.0.0", port=0, token=TOKEN).server_close()
    with pytest.raises(ConfigError):
        make_server(artifact, port=0, token="  ")


@pytest.mark.parametrize(
    "bad",
    [
        {"conn_timeout": float("nan")},
        {"conn_timeout": -1.0},
        {"max_connections": 0},
        {"backlog": float("inf")},
        {"max_inflight": 0},
        {"queue_timeout": float("nan")},
        {"drain_timeout": float("nan")},
        {"port": 70000},
    ],
)
def test_bad_settings_are_refused_before_listening(artifact, bad):
    with pytest.raises(ConfigError):
        make_server(artifact, **{"port": 0, **bad})


def test_token_on_the_wire(artifact):
    with start(artifact, token=TOKEN) as address:
        status, body, headers = post(address, {"question": "q"})
        assert status == 401 and body["error"]["type"] == "Unauthorized" and "Bearer" in headers["WWW-Authenticate"]
        status, body, _ = post(address, {"question": "q"}, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body == {"answer": "answer to q"}
        health = raw_exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert json_body(health)["status"] == "ok"


@pytest.mark.parametrize(
    ("raw", "status", "kind"),
    [
        (b"NONSENSE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "MethodNotAllowed"),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400, "BadRequest"),
        (b"GARBAGE\r\n\r\n", 400, "BadRequest"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URITooLong"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431, "HeadersTooLarge"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n", 400, "BadRequest"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400, "BadRequest"),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411, "LengthRequired"),
        # two different lengths: which one frames the body is ambiguous (request smuggling)
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}", 400, "BadRequest"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 40\r\n\r\n{}", 400, "BadRequest"),
        (
            b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5008\r\n\r\n{"question": ' + b"1" * 5000 + b"}",
            400,
            "InvalidJSON",
        ),
    ],
)
def test_client_mistakes_get_4xx_json(artifact, raw, status, kind):
    with start(artifact) as address:
        got = raw_exchange(address, raw)
        assert got.startswith(f"HTTP/1.1 {status}".encode()), got[:80]
        assert json_body(got)["error"]["type"] == kind


def test_conflicting_lengths_never_run_the_tail_as_a_second_request(artifact):
    calls = []

    def counting(request):
        calls.append(request)
        return answer(request)

    smuggled = b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"question": "tail"}'
    first = b'{"question": "head"}'
    raw = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
        % (len(first), len(first) + len(smuggled))
        + first
        + smuggled
    )
    with start(artifact, lm=FakeLM(counting)) as address:
        got = raw_exchange(address, raw)
    assert got.count(b"HTTP/1.1 ") == 1 and got.startswith(b"HTTP/1.1 400") and calls == []


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


def test_a_client_dribbling_header_bytes_is_cut_off_at_the_deadline(artifact):
    # Each byte comes well within the timeout, so an idle timer alone would never fire.
    with start(artifact, conn_timeout=1.0) as address:
        s = socket.create_connection(address, timeout=10)
        started = time.monotonic()
        closed_after = None
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                s.sendall(bytes([byte]))
                time.sleep(0.1)
            except OSError:
                closed_after = time.monotonic() - started
                break
            s.settimeout(0.001)
            with contextlib.suppress(TimeoutError, BlockingIOError):
                if s.recv(100) == b"":
                    closed_after = time.monotonic() - started
                    break
        s.close()
        # cut off part-way (about 1 s in), though no byte was ever more than 0.1 s late
        assert closed_after is not None


def test_hundreds_of_dribbling_connections_do_not_stop_real_requests(artifact):
    with start(artifact, conn_timeout=6.0) as address:
        stop = threading.Event()
        slow = [socket.create_connection(address, timeout=10) for _ in range(300)]

        def dribble() -> None:
            i = 0
            while not stop.is_set():
                for s in slow:
                    with contextlib.suppress(OSError):
                        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n"[i % 27 : i % 27 + 1])
                i += 1
                stop.wait(0.5)

        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        try:
            time.sleep(0.5)
            with ThreadPoolExecutor(20) as pool:
                results = list(pool.map(lambda i: post(address, {"question": f"r{i}"}, timeout=20), range(40)))
            assert [r[0] for r in results] == [200] * 40
            assert [r[1]["answer"] for r in results] == [f"answer to r{i}" for i in range(40)]
            for s in slow:  # answered while all 300 were still open, not after they were dropped
                s.setblocking(False)
                with pytest.raises(BlockingIOError):
                    s.recv(100)
                s.setblocking(True)
            time.sleep(6.5)  # past the headers deadline: every dribbler has been closed
            closed = 0
            for s in slow:
                s.settimeout(2)
                try:
                    closed += s.recv(100) == b""
                except OSError:
                    closed += 1
            assert closed == 300
        finally:
            stop.set()
            dribbler.join()
            for s in slow:
                s.close()


def test_connections_over_the_limit_get_an_immediate_503(artifact):
    with start(artifact, max_connections=2) as address:
        idle = [socket.create_connection(address, timeout=10) for _ in range(2)]
        time.sleep(0.2)
        extra = raw_exchange(address, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.startswith(b"HTTP/1.1 503") and json_body(extra)["error"]["type"] == "Busy"
        assert b"retry-after: 1" in extra.lower()
        for s in idle:
            s.close()
        time.sleep(0.2)
        assert post(address, {"question": "after"})[0] == 200


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


def test_a_failing_on_listen_closes_the_socket_it_was_told_about(artifact):
    from oobleck.serve import serve

    heard: list[str] = []

    def on_listen(url: str) -> None:
        heard.append(url)
        raise RuntimeError("the caller's own hook failed")

    with context(lm=FakeLM(answer)), pytest.raises(RuntimeError, match="hook failed") as failed:
        serve(artifact, port=0, on_listen=on_listen)
    assert failed.value is not None  # the traceback (and the server's frame) is still alive here
    port = int(heard[0].rsplit(":", 1)[1].strip("/"))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:  # no SO_REUSEADDR: free means free
        again.bind(("127.0.0.1", port))


def test_a_server_that_fails_after_binding_closes_its_socket(artifact, monkeypatch):
    import uvicorn

    bound: list[socket.socket] = []
    real_bind = _server.bind

    def spy(host: str, port: int, backlog: int) -> socket.socket:
        bound.append(real_bind(host, port, backlog))
        return bound[-1]

    def broken(*args, **kwargs):
        raise RuntimeError("uvicorn refused the config")

    monkeypatch.setattr(_server, "bind", spy)
    monkeypatch.setattr(uvicorn, "Config", broken)
    with context(lm=FakeLM(answer)), pytest.raises(RuntimeError, match="refused"):
        make_server(artifact, port=0)
    assert len(bound) == 1 and bound[0].fileno() == -1  # closed
