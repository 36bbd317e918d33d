"""Why scoring 77 labels on LocalLM stays slow: where the time goes, and two ways out that fail.

    PYTHONPATH=. python benchmarks/label_scoring_slots.py [--rows 4]

SmolLM2-135M on ``LocalLM``, Banking77's 77 intents scored after each of the first --rows dev
rows (the prompt of label_scoring_cost.py), with oobleck's own scorer
(:func:`oobleck.lm._llama_score.score`). Measured, each on a fresh LocalLM after one untimed row:

per-token costs   milliseconds per token of the row's text evaluated as prompt (one batch),
                  and per label token forced by the scorer (one decoding step each)
slots             the 77 labels split over 1, 4 and 8 concurrent scorers (threads), on a
                  LocalLM with 8 decoding slots: llama.cpp batches the slots' steps together
threads           llama.cpp's CPU threads per step: 1 (LocalLM's default on 2 cores) and 2

Prints one JSON object and writes benchmarks/results/label_scoring_slots.json. A timing
benchmark: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import DATA, machine, read_jsonl, write_result
from label_scoring_cost import labels_of, messages


def scorer(lm: Any) -> Any:
    """LocalLM's in-process scoring routes (the object ``LocalLM._score`` builds)."""
    import httpx

    from oobleck.lm.local import _InProcess

    return _InProcess(lm.server(), httpx.Client(timeout=120.0))


def timed_rows(lm: Any, rows: list[dict[str, Any]], labels: tuple[str, ...], parts: int) -> dict[str, Any]:
    """Seconds per row scoring ``labels`` split over ``parts`` concurrent scorers (rows[0] untimed)."""
    from oobleck.lm import _llama_score

    server = scorer(lm)
    chunks = [labels[i::parts] for i in range(parts)]
    seconds, sent = [], []
    with ThreadPoolExecutor(parts) as pool:
        for i, row in enumerate(rows):
            msgs = messages("banking77", row["text"], labels)
            started = time.perf_counter()
            done = list(pool.map(lambda c: _llama_score.score(server, msgs, c), chunks))  # noqa: B023
            if i:
                seconds.append(time.perf_counter() - started)
                sent.append(sum(n for _, n in done))
    return {"seconds_per_row": round(statistics.fmean(seconds), 3), "tokens_evaluated_per_row": statistics.fmean(sent)}


def per_token(lm: Any, rows: list[dict[str, Any]], labels: tuple[str, ...]) -> dict[str, float]:
    """Milliseconds per prompt token (a batch) and per forced label token (a decoding step)."""
    from oobleck.lm import _llama_score

    server = scorer(lm)
    prompt_ms, forced_ms = [], []
    for row in rows:
        msgs = [m.model_dump() for m in messages("banking77", row["text"], labels)]
        prompt = server.tokenize(server.apply_template(msgs), add_special=True)
        base = {"temperature": 0.0, "cache_prompt": True, "seed": 0, "logprobs": 1, "post_sampling_probs": False}
        server.completion({**base, "prompt": prompt[:-1], "max_tokens": 1})  # all but the row's last token cached
        fresh = prompt[:-1][: len(prompt) // 2]  # drop the cached tail: its tokens are evaluated again, as one batch
        server.completion({**base, "prompt": fresh, "max_tokens": 1})
        started = time.perf_counter()
        server.completion({**base, "prompt": prompt, "max_tokens": 1})
        prompt_ms.append((time.perf_counter() - started) * 1000 / (len(prompt) - len(fresh)))
        forced = server.tokenize(labels[3], add_special=False)
        started = time.perf_counter()
        server.completion(
            {**base, "prompt": prompt, "max_tokens": len(forced), "grammar": _llama_score.forcing_grammar(forced)}
        )
        forced_ms.append((time.perf_counter() - started) * 1000 / len(forced))
    return {
        "ms_per_prompt_token": round(statistics.median(prompt_ms), 2),
        "ms_per_forced_token": round(statistics.median(forced_ms), 2),
    }


def main() -> None:
    from oobleck.lm.local import LocalLM

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4, help="timed Banking77 dev rows")
    args = parser.parse_args()
    labels = labels_of("banking77")
    rows = read_jsonl(DATA / "banking77" / "dev.jsonl")[: args.rows + 1]
    out: dict[str, Any] = {
        "what": "scoring Banking77's 77 labels on LocalLM: per-token costs, parallel slots, CPU threads",
        "command": f"PYTHONPATH=. python benchmarks/label_scoring_slots.py --rows {args.rows}",
        "labels": len(labels),
        "rows": args.rows,
    }
    lm = LocalLM(n_parallel=8)
    try:
        out["per_token"] = per_token(lm, rows, labels)
        out["slots"] = {str(n): timed_rows(lm, rows, labels, n) for n in (1, 4, 8)}
    finally:
        lm.close()
    out["threads"] = {}
    for n in (1, 2):
        lm = LocalLM(n_threads=n)
        try:
            out["threads"][str(n)] = timed_rows(lm, rows, labels, 1)
        finally:
            lm.close()
    out["machine"] = machine()
    write_result("label_scoring_slots", out)


if __name__ == "__main__":
    main()
