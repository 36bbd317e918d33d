"""The real embedded model behind a real HTTP server: the happy path, and a kill in the middle of a run.

The server runs in its own process so it can be killed (SIGKILL) mid-evaluation and started
again on the same port; the run must finish with every row answered once, nothing lost, nothing
duplicated, and a second run must be answered from the cache without a single new request.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest

from oobleck import Cache, CachedLM, Example, JSONAdapter, OpenAILM, Predict
from oobleck.evaluation import evaluate

try:
    import httpx2 as httpx
except ImportError:  # older SDKs use httpx itself
    import httpx  # type: ignore[no-redef]

SERVE = Path(__file__).parents[1] / "fixtures" / "serve_local.py"
SENTIMENT = "text -> label: Literal['positive', 'negative']"
TEXTS = [
    "a warm, funny and moving film",
    "dull, slow and far too long",
    "the best thing I saw this year",
    "a complete waste of time",
    "charming performances all round",
    "I walked out after an hour",
    "clever, tender, beautifully shot",
    "flat jokes and a muddled plot",
    "an instant classic",
    "painfully boring",
    "delightful from start to finish",
    "the worst sequel yet",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")])),
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVE), str(self.port)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


class Counter:
    """Counts requests sent and responses received by the OpenAI client's transport."""

    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        self.lock = threading.Lock()
        self.answered_event = threading.Event()

    def on_request(self, request) -> None:
        with self.lock:
            self.sent += 1

    def on_response(self, response) -> None:
        if response.status_code == 200:
            with self.lock:
                self.answered += 1
                if self.answered >= 4:
                    self.answered_event.set()


def program(port: int, counter: Counter, cache_dir: Path) -> Predict:
    client = openai.OpenAI(
        api_key="unused",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=0,
        http_client=httpx.Client(event_hooks={"request": [counter.on_request], "response": [counter.on_response]}),
    )
    lm = OpenAILM(
        "smollm2",
        client=client,
        timeout=60,
        max_retries=12,
        backoff=0.25,
        max_backoff=2.0,
        temperature=0,
        max_tokens=24,
    )
    return Predict(SENTIMENT, lm=CachedLM(lm, cache=Cache(cache_dir)), adapter=JSONAdapter())


def dev() -> list[Example]:
    return [Example(text=t, label="positive").with_inputs("text") for t in TEXTS]


def label_metric(example, prediction, trace=None) -> bool:
    return prediction.label in ("positive", "negative")


@pytest.mark.slow
def test_real_server_happy_path_counts(tmp_path):
    server = Server(free_port())
    server.start()
    try:
        counter = Counter()
        result = evaluate(
            program(server.port, counter, tmp_path), dev()[:4], label_metric, num_threads=2, progress=False
        )
        assert result.score == 100.0 and [r.error for r in result.rows] == [None] * 4
        assert counter.sent == counter.answered == 4 and result.usage.calls == 4 and result.usage.retries == 0
    finally:
        server.stop()


@pytest.mark.slow
def test_server_killed_mid_evaluation_and_restarted_loses_and_repeats_nothing(tmp_path):
    server = Server(free_port())
    server.start()
    counter = Counter()

    def chaos() -> None:
        counter.answered_event.wait(120)
        server.kill()  # whatever is in flight is cut off
        time.sleep(1.0)  # calls meanwhile meet a refused connection
        server.start()

    killer = threading.Thread(target=chaos)
    try:
        killer.start()
        result = evaluate(
            program(server.port, counter, tmp_path), dev(), label_metric, num_threads=2, progress=False, max_errors=0
        )
        killer.join(180)
        assert not killer.is_alive()
        rows = sorted(r.index for r in result.rows)
        assert rows == list(range(len(TEXTS))) and all(r.error is None for r in result.rows)
        assert result.score == 100.0
        # Every row was answered exactly once; every attempt is a call, the failed ones retried.
        assert counter.answered == len(TEXTS)
        assert result.usage.calls == counter.sent and result.usage.retries == counter.sent - counter.answered
        assert result.usage.retries >= 1
        # A second run (the resume) is answered from the cache: not one request is sent.
        before = counter.sent
        again = evaluate(program(server.port, counter, tmp_path), dev(), label_metric, num_threads=2, progress=False)
        assert counter.sent == before and again.usage.cache_hits == len(TEXTS) and again.usage.calls == 0
        assert [r.prediction.label for r in sorted(again.rows, key=lambda r: r.index)] == [
            r.prediction.label for r in sorted(result.rows, key=lambda r: r.index)
        ]
    finally:
        killer.join(1)
        server.stop()
