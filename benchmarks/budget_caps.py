"""Is max_lm_calls a cap? Compiles under a call limit with threads, parse repairs, a proposer,
transport retries and Auto's members; prints the limit and the calls each backend saw (one JSON line per case).

    PYTHONPATH=. python benchmarks/budget_caps.py [--seeds N]

Scripted LMs only (FakeLM, and OpenAILM on an httpx.MockTransport): the numbers are counts,
not timings, and the same on any machine up to thread interleaving (hence several seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "optimize"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))

from _common import machine, write_result  # noqa: E402
from _opt_helpers import sentiment_rows  # noqa: E402
from test_instruction_search import instruction_sensitive  # noqa: E402
from test_proposer import Review  # noqa: E402

from oobleck import Example, FakeLM, LMRequest, Predict, context  # noqa: E402
from oobleck.metrics import exact_match  # noqa: E402
from oobleck.optimize import Auto, InstructionSearch, RandomSearch  # noqa: E402


def jittery(seed: int, garbage: float) -> FakeLM:
    """instruction_sensitive, after a random tiny sleep; a fraction of answers are garbage."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def answer(request: LMRequest) -> Any:
        with lock:
            pause, bad = rng.random() * 0.002, rng.random() < garbage
        time.sleep(pause)
        return "%%% not an answer %%%" if bad else instruction_sensitive(request)

    return FakeLM(answer)


def instruction_search(limit: int, threads: int, seed: int, garbage: float) -> dict[str, Any]:
    data = sentiment_rows()
    lm = jittery(seed, garbage)
    with context(max_retries=2):
        out = InstructionSearch(
            exact_match, breadth=3, depth=3, n_demos=1, num_threads=threads, max_lm_calls=limit, max_errors=None
        ).compile(Predict(Review, lm=lm), trainset=data[:6], valset=data[6:], seed=seed, progress=False)
    return {"limit": limit, "sent": len(lm.requests), "provenance_calls": out.provenance["lm_calls"]}


def transport_retries(limit: int, seed: int) -> dict[str, Any]:
    import httpx
    import openai

    from oobleck.lm.openai import OpenAILM

    rng = random.Random(seed)
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) > 6 and rng.random() < 0.6:  # healthy at first, then overloaded
            return httpx.Response(500, json={"error": {"message": "overloaded"}})
        body = json.loads(request.content)
        text = body["messages"][-1]["content"]
        label = "positive" if any(w in text for w in ("funny", "best", "delightful", "joy", "warm")) else "negative"
        return httpx.Response(200, json=_completion(f"[[ ## label ## ]]\n{label}\n\n[[ ## completed ## ]]"))

    client = openai.OpenAI(
        api_key="x",
        base_url="http://mock/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    lm = OpenAILM("mock", client=client, max_retries=3, backoff=0.0, max_backoff=0.0)
    data = sentiment_rows()
    program = Predict("sentence -> label", lm=lm)
    out = RandomSearch(
        exact_match, num_candidates=2, max_bootstrapped_demos=1, max_lm_calls=limit, max_errors=None
    ).compile(program, trainset=data[:6], valset=data[6:], seed=seed, progress=False)
    return {"limit": limit, "sent": len(seen), "provenance_calls": out.provenance["lm_calls"]}


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "x", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }  # fmt: skip


def auto(budget: int, threads: int, seed: int) -> dict[str, Any]:
    rows = [Example(q=str(i), a="even" if i % 2 == 0 else "odd").with_inputs("q") for i in range(60)]
    fake = FakeLM(lambda r: (time.sleep(0.001), {"a": "even"})[1])
    best = Auto(exact_match, budget=budget, num_threads=threads, max_errors=None).compile(
        Predict("q -> a", lm=fake), trainset=rows[:20], valset=rows[20:], seed=seed, progress=False
    )
    members = [
        {"name": m["name"], "share": m.get("budget"), "sent": m.get("calls")}
        for m in best.provenance["scores"]["members"]
        if "skipped" not in m
    ]
    return {"limit": budget, "sent": len(fake.requests), "members": members}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    started = time.perf_counter()
    seeds = range(args.seeds)
    out: dict[str, Any] = {}
    for threads, garbage in ((4, 0.0), (8, 0.2), (1, 0.3)):
        for limit in (15, 25, 63):
            runs = [instruction_search(limit, threads, s, garbage) for s in seeds]
            out[f"instruction_search threads={threads} garbage={garbage} limit={limit}"] = {
                "max_sent": max(r["sent"] for r in runs),
                "sent": [r["sent"] for r in runs],
                "provenance_calls": [r["provenance_calls"] for r in runs],
            }
    for limit in (8, 10, 20):
        runs = [transport_retries(limit, s) for s in seeds]
        out[f"openai HTTP 500 after 6 requests (p=0.6), max_retries=3, limit={limit}"] = {
            "max_sent": max(r["sent"] for r in runs),
            "sent": [r["sent"] for r in runs],
            "provenance_calls": [r["provenance_calls"] for r in runs],
        }
    for budget in (100, 200):
        runs = [auto(budget, 4, s) for s in seeds]
        out[f"auto threads=4 budget={budget}"] = {
            "max_sent": max(r["sent"] for r in runs),
            "worst_member_over_share": max((m["sent"] or 0) - (m["share"] or 0) for r in runs for m in r["members"]),
            "members_seed0": [f"{m['name']}: {m['sent']} of {m['share']}" for m in runs[0]["members"]],
        }
    for name, row in out.items():
        print(json.dumps({"case": name, **row}, sort_keys=True), file=sys.stderr)
    limits = {name: int(name.rsplit("=", 1)[1]) for name in out}
    write_result(
        "budget_caps",
        {
            "benchmark": "budget_caps",
            "seeds": args.seeds,
            "cases": out,
            "limits": limits,
            "cap_held": all(row["max_sent"] <= limits[name] for name, row in out.items()),
            "elapsed_s": round(time.perf_counter() - started, 1),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
