"""Stream a program's answer as it is decoded, on the embedded model.

1. ``program.stream(...)``: a ChainOfThought on the embedded SmolLM2 model yields its
   ``reasoning``, then its ``answer``, piece by piece as llama.cpp decodes them (printed as they
   come), then the final typed Prediction: the same one calling the program returns.
2. ``program.astream(...)`` from async code, stopped after a few pieces: decoding stops there
   and the model is free for the next call.
3. The same program behind a cache: a cached answer is not decoded again, so its fields come
   whole, once each.

Run it with ``python examples/streaming.py`` inside the venv (``--quick`` asks one question).
Writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from oobleck import Cache, CachedLM, ChainOfThought, LocalLM, Prediction, StreamChunk

HERE = Path(__file__).resolve().parent
QUESTIONS = ["What is the capital of France?", "Which planet is known as the red planet?"]


def stream_one(program: ChainOfThought, question: str) -> dict[str, Any]:
    """Print the fields as they arrive; check the pieces add up to the final prediction."""
    started = time.perf_counter()
    first: float | None = None
    pieces: dict[str, list[str]] = {}
    final: Prediction | None = None
    field = None
    print(f"\nQ: {question}")
    for item in program.stream(question=question):
        if isinstance(item, StreamChunk):
            first = first if first is not None else time.perf_counter() - started
            if item.field != field:
                field = item.field
                print(f"\n  [{item.predictor}.{item.field}] ", end="")
            print(item.text, end="", flush=True)
            pieces.setdefault(item.field, []).append(item.text)
        else:
            final = item
    total = time.perf_counter() - started
    assert final is not None
    print(f"\n  -> {final.answer!r} (first piece after {first or 0:.2f}s, all after {total:.2f}s)")
    return {
        "question": question,
        "answer": final.answer,
        "pieces": {name: len(texts) for name, texts in pieces.items()},
        "pieces_equal_fields": all("".join(pieces.get(n, [])) == final[n] for n in ("reasoning", "answer")),
        "first_piece_s": round(first or 0.0, 3),
        "total_s": round(total, 3),
    }


async def stop_early(program: ChainOfThought, question: str, keep: int) -> list[str]:
    """Read ``keep`` pieces from the async stream, then stop."""
    got: list[str] = []
    async with contextlib.aclosing(program.astream(question=question)) as stream:
        async for item in stream:
            if isinstance(item, StreamChunk):
                got.append(item.text)
                if len(got) == keep:
                    break
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "streaming.json"), help="where to write the summary")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory (step 3)")
    parser.add_argument("--quick", action="store_true", help="one question only (used by the test suite)")
    args = parser.parse_args(argv)

    lm = LocalLM(temperature=0, max_tokens=96)
    try:
        program = ChainOfThought("question -> answer", lm=lm)
        runs = [stream_one(program, q) for q in QUESTIONS[: 1 if args.quick else None]]
        plain = program(question=QUESTIONS[0])
        same_as_call = plain.answer == runs[0]["answer"]

        early = asyncio.run(stop_early(program, QUESTIONS[0], keep=3))
        print(f"\nastream stopped after {len(early)} pieces: {''.join(early)!r}; the model answers on:")
        after = program(question=QUESTIONS[-1]).answer
        print(f"  {after!r}")

        cached = ChainOfThought("question -> answer", lm=CachedLM(lm, cache=Cache(args.cache)))
        list(cached.stream(question=QUESTIONS[0]))  # decoded (or already cached by an earlier run)
        *hit, hit_pred = cached.stream(question=QUESTIONS[0])
        print(f"\ncached: {[(c.field, c.text) for c in hit]}")
        whole = [c.field for c in hit] == ["reasoning", "answer"] and hit_pred.usage.cache_hits == 1
    finally:
        lm.close()

    summary = {
        "runs": runs,
        "stream_equals_call": same_as_call,
        "stopped_after_pieces": len(early),
        "answer_after_stop": after,
        "cache_hit_fields_whole": whole,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    ok = (
        all(r["pieces_equal_fields"] and r["pieces"].get("reasoning", 0) > 1 for r in runs)
        and same_as_call
        and len(early) == 3
        and whole
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
