"""Budgets are caps: every call is reserved before it is sent, across threads, parse repairs,
transport retries, proposer calls and Auto's members; a kill and resume counts every call sent."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _opt_helpers import sentiment_rows
from test_instruction_search import instruction_sensitive
from test_proposer import Review

from oobleck import BudgetExceededError, Example, FakeLM, LMRequest, Predict, Usage, context
from oobleck._budget import Budget, Ticket, token_bound
from oobleck._checkpoint import Checkpoint
from oobleck._run import run_example
from oobleck.lm.types import Message
from oobleck.metrics import exact_match
from oobleck.optimize import Auto, InstructionSearch, RandomSearch

ROOT = Path(__file__).resolve().parents[2]


def jittery(seed: int, garbage: float) -> FakeLM:
    """instruction_sensitive after a random tiny sleep (threads interleave); some answers garbage."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def answer(request: LMRequest) -> Any:
        with lock:
            pause, bad = rng.random() * 0.002, rng.random() < garbage
        time.sleep(pause)
        return "%%% not an answer %%%" if bad else instruction_sensitive(request)

    return FakeLM(answer)


@pytest.mark.parametrize("seed", range(12))
def test_max_lm_calls_is_never_exceeded_with_threads_repairs_and_a_proposer(seed: int) -> None:
    data = sentiment_rows()
    limit = random.Random(seed).choice([7, 15, 25, 40, 63])
    lm = jittery(seed, garbage=0.25)
    with context(max_retries=2):
        out = InstructionSearch(
            exact_match, breadth=3, depth=3, n_demos=1, num_threads=8, max_lm_calls=limit, max_errors=None
        ).compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:], seed=seed, progress=False)
    assert len(lm.requests) <= limit
    prov = out.provenance
    assert prov["lm_calls"] == out.compile_usage.calls == len(lm.requests)  # every call sent is counted
    assert prov["stopped_early"] is True and prov["stop_reason"].startswith(f"max_lm_calls={limit} reached")


def test_a_compile_under_its_limit_is_not_stopped_and_says_nothing() -> None:
    data = sentiment_rows()
    lm = FakeLM(instruction_sensitive)
    out = InstructionSearch(exact_match, breadth=2, depth=1, n_demos=1, num_threads=4, max_lm_calls=10_000).compile(
        Predict(Review, lm=lm), trainset=data[:6], valset=data[6:], progress=False
    )
    assert out.provenance["stopped_early"] is False and "stop_reason" not in out.provenance


def _openai_on(handler: Any, **kwargs: Any) -> Any:
    httpx = pytest.importorskip("httpx")
    openai = pytest.importorskip("openai")
    from oobleck.lm.openai import OpenAILM

    client = openai.OpenAI(
        api_key="x", base_url="http://mock/v1", max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )  # fmt: skip
    return OpenAILM("mock", client=client, backoff=0.0, max_backoff=0.0, **kwargs)


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "x", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threads", [1, 4])
def test_transport_retries_are_reserved_before_they_are_sent(seed: int, threads: int) -> None:
    httpx = pytest.importorskip("httpx")
    rng = random.Random(seed)
    lock = threading.Lock()
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        with lock:
            seen.append(request)
            fail = len(seen) > 4 and rng.random() < 0.6  # healthy at first, then overloaded
        if fail:
            return httpx.Response(500, json={"error": {"message": "overloaded"}})
        return httpx.Response(200, json=_completion("[[ ## label ## ]]\npositive\n\n[[ ## completed ## ]]"))

    lm = _openai_on(handler, max_retries=3)
    data = sentiment_rows()
    limit = 6 + seed
    out = RandomSearch(
        exact_match,
        num_candidates=2,
        max_bootstrapped_demos=1,
        max_lm_calls=limit,
        max_errors=None,
        num_threads=threads,
    ).compile(Predict("sentence -> label", lm=lm), trainset=data[:6], valset=data[6:], seed=seed, progress=False)
    assert len(seen) <= limit
    assert out.provenance["lm_calls"] == len(seen)
    assert out.provenance["stopped_early"] is True


def test_a_refused_retry_is_not_sent_and_counts_what_was() -> None:
    httpx = pytest.importorskip("httpx")
    seen: list[Any] = []

    def handler(request: Any) -> Any:
        seen.append(request)
        return httpx.Response(500, json={"error": {"message": "down"}})

    lm = _openai_on(handler, max_retries=5)
    budget = Budget(max_lm_calls=3)
    with budget.activate(), pytest.raises(BudgetExceededError, match="the retry was not sent") as info:
        run_example(Predict("sentence -> label", lm=lm), sentiment_rows()[0], exact_match)
    assert len(seen) == 3 == info.value.attempts == budget.spent.calls
    assert budget.stopped and budget.held == (0, 0)


@pytest.mark.parametrize("budget", [60, 120])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_members_keep_to_their_share_with_threads(budget: int, seed: int) -> None:
    rows = [Example(q=str(i), a="even" if i % 2 == 0 else "odd").with_inputs("q") for i in range(60)]
    rng = random.Random(seed)
    lm = FakeLM(lambda request: (time.sleep(rng.random() * 0.001), {"a": "even"})[1])
    best = Auto(exact_match, budget=budget, num_threads=4, max_errors=None).compile(
        Predict("q -> a", lm=lm), trainset=rows[:20], valset=rows[20:], seed=seed, progress=False
    )
    members = [m for m in best.provenance["scores"]["members"] if "skipped" not in m]
    assert members and all(m["calls"] <= m["budget"] for m in members)
    assert len(lm.requests) <= budget
    assert best.compile_usage.calls == len(lm.requests)


def test_a_token_cap_reserves_an_upper_bound_and_settles_to_the_actual() -> None:
    request = LMRequest(messages=(Message(role="user", content="héllo"),), max_tokens=5, n=2)
    assert token_bound(request) == len("héllo".encode()) + 16 + 10
    b = Budget(max_tokens=100)
    ticket = b.reserve(request)
    assert b.held == (1, token_bound(request))
    ticket.settle(Usage(calls=1, prompt_tokens=4, completion_tokens=2))
    assert b.held == (0, 0) and b.spent.total_tokens == 6
    big = LMRequest(messages=(Message(role="user", content="x" * 200),), max_tokens=5)
    with pytest.raises(BudgetExceededError, match="max_tokens=100 reached"):
        b.reserve(big)  # its bound cannot fit, whatever it would really cost
    assert b.stopped and b.reason is not None


def test_a_waiting_reservation_gets_the_room_a_cache_hit_gives_back() -> None:
    b = Budget(max_lm_calls=1)
    first = b.reserve()
    got: list[object] = []

    def second() -> None:
        try:
            got.append(b.reserve())
        except BudgetExceededError as exc:
            got.append(exc)

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.05)
    assert got == []  # waiting: the call in flight may give its reservation back
    first.settle(Usage(cache_hits=1))
    t.join(5)
    assert len(got) == 1 and isinstance(got[0], Ticket)
    got[0].settle(Usage(calls=1))  # the second call reached the backend
    with pytest.raises(BudgetExceededError):
        b.reserve()  # nothing in flight could make room: refused at once


def test_a_nested_budget_reserves_in_its_parent_too() -> None:
    outer = Budget(max_lm_calls=3)
    inner = Budget(max_lm_calls=10, parent=outer)
    for _ in range(3):
        inner.reserve().settle(Usage(calls=1))
    assert outer.spent.calls == inner.spent.calls == 3
    with pytest.raises(BudgetExceededError, match="max_lm_calls=3"):
        inner.reserve()
    assert outer.stopped and inner.stopped


def test_the_ledger_counts_calls_in_flight_at_a_kill(tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path / "ck.json", {"x": 1})
    ledger = ck.ledger()
    assert ledger is not None and ledger.open(resume=False) is None
    b = Budget(max_lm_calls=10, ledger=ledger)
    b.reserve().settle(Usage(calls=1, prompt_tokens=7))
    b.reserve()  # sent, never answered: the process dies here
    ledger.close()
    with open(ledger.path, "a") as f:
        f.write('{"held": [1, ')  # a line a kill cut short is ignored
    again = ck.ledger()
    assert again is not None
    assert again.open(resume=True) == Usage(calls=2, prompt_tokens=7)
    again.close()
    other = Checkpoint(tmp_path / "ck.json", {"x": 2}).ledger()
    assert other is not None and other.open(resume=True) is None  # another compile's ledger starts over
    other.close()


# ---- a compile killed with SIGKILL mid-run, resumed: provenance counts what the server saw ----

CHILD = """
import sys
from oobleck import Example, Predict
from oobleck.lm.openai import OpenAILM
from oobleck.metrics import exact_match
from oobleck.optimize import RandomSearch

url, ckpt, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
words = ["funny", "dull", "warm", "flat", "joy", "slow", "best", "bland"]
rows = [Example(sentence=f"{words[i % 8]} film {i}", label="positive").with_inputs("sentence") for i in range(40)]
lm = OpenAILM("m", base_url=url, max_retries=0, timeout=30)
out = RandomSearch(exact_match, num_candidates=3, max_bootstrapped_demos=1, num_threads=threads, racing=False).compile(
    Predict("sentence -> label", lm=lm), trainset=rows[:8], valset=rows[8:], checkpoint=ckpt, progress=False
)
print(out.provenance["lm_calls"])
"""


@pytest.mark.parametrize(("threads", "kill_at"), [(1, 45), (3, 100)])
def test_kill_and_resume_counts_every_call_the_server_saw(tmp_path: Path, threads: int, kill_at: int) -> None:
    from scripted_server import ScriptedServer, completion, response_bytes

    answer = json.dumps(completion("[[ ## label ## ]]\npositive\n\n[[ ## completed ## ]]")).encode()
    reached, killed = threading.Event(), threading.Event()

    def step(sock: Any, _: bytes) -> None:
        if not killed.is_set() and len(server.seen) >= kill_at:
            reached.set()  # from here on no answer comes: every thread's call is in flight
            killed.wait(60)
            return
        time.sleep(0.002)
        head, body = response_bytes(200, answer)
        sock.sendall(head + body)

    server = ScriptedServer([step])
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ckpt = tmp_path / "ck.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, str(script), server.url, str(ckpt), str(threads)]
    try:
        child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert reached.wait(120), child.communicate()[1].decode()[-2000:]
        time.sleep(0.5)  # the other threads' calls reach the server too (it answers none)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        killed.set()
        killed_at = len(server.seen)
        assert ckpt.exists() and killed_at >= kill_at
        done = subprocess.run(args, env=env, capture_output=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        counted = int(done.stdout.decode().split()[-1])
        assert counted == len(server.seen) > killed_at
        # the rows finished before the kill were checkpointed: resuming paid for few of them again
        fresh = subprocess.run(
            [*args[:3], str(tmp_path / "fresh.json"), str(threads)],
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        uninterrupted = int(fresh.stdout.decode().split()[-1])
        assert counted <= uninterrupted + 3 * 4  # at most one chunk of rows (and its calls in flight) paid twice
    finally:
        server.close()
