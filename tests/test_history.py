"""oobleck.history: the last LM calls, readable, bounded and safe across threads."""

from __future__ import annotations

import io
import threading

import pytest

import oobleck
from oobleck import Cache, CachedLM, FakeLM, LMResponseError, Predict
from oobleck import history as history_fn
from oobleck.history import SIZE, clear


@pytest.fixture(autouse=True)
def empty() -> None:
    clear()


def test_prints_the_last_calls_by_role_with_tokens_latency_and_cache() -> None:
    qa = Predict("question -> answer", lm=FakeLM([{"answer": "4"}, {"answer": "9"}], name="tiny-model"))
    qa(question="2+2?")
    qa(question="3*3?")
    out = io.StringIO()
    calls = oobleck.history(2, file=out)
    text = out.getvalue()
    assert [c.responses for c in calls] == [("[[ ## answer ## ]]\n4",), ("[[ ## answer ## ]]\n9",)]
    assert text.index("2+2?") < text.index("3*3?")  # oldest first
    for part in ("[system]", "[user]", "[response]", "tiny-model", "prompt + ", "completion tokens"):
        assert part in text
    assert calls[0].usage.prompt_tokens > 0 and calls[0].latency_s >= 0 and not calls[0].cached
    header = text.splitlines()[0]
    assert ("µs" in header or "ms" in header or " s " in header) and "e-0" not in header  # rounded for people
    assert history_fn(1, show=False) == calls[-1:]


def test_cache_hits_and_failures_are_shown_as_such(tmp_path) -> None:
    lm = CachedLM(FakeLM([{"answer": "4"}]), cache=Cache(tmp_path))
    Predict("question -> answer", lm=lm)(question="2+2?")
    Predict("question -> answer", lm=lm)(question="2+2?")
    with pytest.raises(LMResponseError):
        Predict("question -> answer", lm=FakeLM([]))(question="?")
    first, hit, failed = history_fn(3, show=False)
    assert not first.cached and hit.cached and hit.usage.prompt_tokens == 0
    assert "cached" in hit.render()
    assert failed.error is not None and failed.error.startswith("LMResponseError") and failed.responses == ()
    assert "[error]" in failed.render()


def test_memory_is_bounded_the_oldest_go_first() -> None:
    lm = FakeLM(lambda request: {"answer": "ok"})
    qa = Predict("question -> answer", lm=lm)
    for i in range(SIZE + 25):
        qa(question=f"q{i}")
    calls = history_fn(10 * SIZE, show=False)
    assert len(calls) == SIZE
    assert f"q{SIZE + 24}" in calls[-1].messages[-1].content
    assert f"q{25}" in calls[0].messages[-1].content  # q0..q24 were dropped


def test_threads_record_while_others_read() -> None:
    lm = FakeLM(lambda request: {"answer": "ok"})
    qa = Predict("question -> answer", lm=lm)
    errors: list[BaseException] = []
    stop = threading.Event()

    def call(n: int) -> None:
        try:
            for i in range(40):
                qa(question=f"t{n}-{i}")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            try:
                history_fn(SIZE, show=False)
            except BaseException as exc:
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    workers = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    reader.join()
    assert errors == []
    assert len(lm.requests) == 240 and len(history_fn(10 * SIZE, show=False)) == SIZE


def test_nothing_yet_says_so() -> None:
    out = io.StringIO()
    assert history_fn(3, file=out) == []
    assert out.getvalue() == "no LM calls yet\n"
