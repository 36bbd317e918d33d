from __future__ import annotations

import threading

import pytest

from oobleck import ConfigError, FakeLM, Predict, context, trace
from oobleck.parallel import run


def echo_lm(name: str) -> FakeLM:
    return FakeLM(lambda req: {"answer": name}, name=name)


def test_explicit_attribute_beats_context():
    p = Predict("q -> answer", lm=echo_lm("own"))
    with context(lm=echo_lm("ctx")):
        assert p(q="x").answer == "own"
        p.lm = None
        assert p(q="x").answer == "ctx"


def test_many_threads_each_see_their_own_context():
    program = Predict("q -> answer")
    barrier = threading.Barrier(16)
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        with context(lm=echo_lm(f"lm{i}")):
            barrier.wait()  # all threads inside their own context at once
            for _ in range(20):
                assert program(q=str(i)).answer == f"lm{i}"
            results[i] = program(q="x").answer

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"lm{i}" for i in range(16)}


def test_parallel_run_carries_the_context_and_trace_into_workers():
    program = Predict("q -> answer")
    with context(lm=echo_lm("outer")), trace() as t:
        outputs = {
            i: f.result().answer for i, f in run(lambda q: program(q=q), [str(i) for i in range(12)], num_threads=4)
        }
    assert set(outputs.values()) == {"outer"}
    assert len(t) == 12


def test_unknown_setting():
    with pytest.raises(ConfigError, match="unknown setting"):
        with context(llm=echo_lm("x")):
            pass
    with pytest.raises(ConfigError, match="cache must be"):
        with context(cache="sometimes"):  # type: ignore[arg-type]
            pass
