"""Watch a program and its compile: a callback, OpenTelemetry spans, and the last LM calls.

1. A callback (a subclass of ``oobleck.Callback``) counts every step and the tokens of every LM
   call while a small SST-2 sentiment program is compiled with ``RandomSearch`` on the embedded
   SmolLM2 model, then called once more inside an outer span, the way a server wraps a request.
2. When the OpenTelemetry SDK is installed (``pip install 'oobleck[otel]' opentelemetry-sdk``),
   the same steps become spans following the GenAI semantic conventions; this script keeps
   them in memory and prints the tree (in a service you would export them over OTLP to Jaeger,
   Langfuse, Phoenix or MLflow instead: oobleck needs no other setting).
3. ``oobleck.history(1)`` prints the last LM call: messages by role, the answer, tokens,
   latency and whether it came from the cache.

Run it with ``python examples/watching.py`` inside the venv (``--quick`` uses fewer rows).
Writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Literal

import oobleck
from oobleck import Cache, CachedLM, Callback, Event, Example, LocalLM, Module, Predict
from oobleck.metrics import ExactMatch
from oobleck.optimize import RandomSearch

HERE = Path(__file__).resolve().parent


class Sentiment(oobleck.Signature):
    """Is the movie review positive or negative?"""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


class Review(Module):
    def __init__(self, lm: Any) -> None:
        self.classify = Predict(Sentiment, lm=lm)

    def forward(self, text: str) -> oobleck.Prediction:
        return self.classify(text=text)


class Meter(Callback):
    """Counts the steps by kind and sums the tokens of LM calls (thread-safe: rows run in threads)."""

    def __init__(self) -> None:
        self.steps: Counter[str] = Counter()
        self.lm_calls = 0
        self.cache_hits = 0
        self.tokens = 0
        self._lock = threading.Lock()

    def on_end(self, event: Event) -> None:
        with self._lock:
            self.steps[event.kind] += 1
        super().on_end(event)  # hands it on to on_lm_end and the other per-kind methods

    def on_lm_end(self, event: Event) -> None:
        if event.outputs is None:
            return
        usage = event.outputs.usage
        with self._lock:
            self.lm_calls += usage.calls
            self.cache_hits += usage.cache_hits
            self.tokens += usage.total_tokens


def rows(n: int) -> list[Example]:
    with (HERE / "data" / "sst2_train.jsonl").open(encoding="utf-8") as f:
        data = [json.loads(line) for line in f if line.strip()]
    return [Example(r).with_inputs("text") for r in data[:n]]


def in_memory_spans() -> tuple[Any, Any] | None:
    """An SDK tracer provider keeping spans in memory, given to oobleck (None without the SDK)."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return None
    from oobleck import otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # In a service: trace.set_tracer_provider(provider) once, with an OTLP exporter; oobleck
    # then uses the global provider by itself. Here the provider is handed to oobleck alone.
    otel.configure(tracer_provider=provider)
    return provider, exporter


def print_tree(spans: Any, *, max_children: int = 2) -> None:
    """Each span under its parent; past ``max_children`` of one name, a count of the rest."""
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[Any]] = defaultdict(list)
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children[parent].append(s)

    def show(span: Any, depth: int) -> None:
        attrs = span.attributes or {}
        facts = [
            f"{key.split('.')[-1]}={attrs[key]}"
            for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "oobleck.cached")
            if key in attrs
        ]
        if "oobleck.candidate.score" in attrs:
            facts.append(f"score={attrs['oobleck.candidate.score']:.1f}")
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        print(f"{'  ' * depth}{span.name}  {ms:.0f} ms  {' '.join(facts)}".rstrip())
        seen: Counter[str] = Counter()
        for child in children[span.context.span_id]:
            kind = child.name.split()[0]
            seen[kind] += 1
            if seen[kind] <= max_children:
                show(child, depth + 1)
        for kind, count in seen.items():
            if count > max_children:
                print(f"{'  ' * (depth + 1)}... {count - max_children} more '{kind}' spans")

    for root in children[None]:
        show(root, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "watching.json"), help="where to write the summary")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="a few rows only (used by the test suite)")
    args = parser.parse_args(argv)

    data = rows(12 if args.quick else 40)
    train, val = data[: len(data) // 2], data[len(data) // 2 :]
    lm = CachedLM(LocalLM(max_tokens=16), cache=Cache(args.cache))
    tracing = in_memory_spans()
    meter = Meter()

    oobleck.callbacks.add(meter)  # every step in this process, until removed
    try:
        compiled = RandomSearch(
            ExactMatch(field="label"), num_candidates=1, max_bootstrapped_demos=2, max_labeled_demos=2, num_threads=2
        ).compile(Review(lm), trainset=train, valset=val, seed=0, progress=False)
        if tracing is not None:
            provider, _ = tracing
            with provider.get_tracer("my-service").start_as_current_span("POST /classify"):
                answer = compiled(text="a warm, funny and beautifully acted film")
        else:
            answer = compiled(text="a warm, funny and beautifully acted film")
    finally:
        oobleck.callbacks.remove(meter)

    print(f"answer: {answer.label}")
    print(f"steps seen by the callback: {dict(sorted(meter.steps.items()))}")
    print(f"LM calls: {meter.lm_calls} sent, {meter.cache_hits} from the cache, {meter.tokens} tokens")
    summary: dict[str, Any] = {
        "answer": answer.label,
        "steps": dict(meter.steps),
        "lm_calls": meter.lm_calls,
        "cache_hits": meter.cache_hits,
        "tokens": meter.tokens,
    }
    ok = meter.steps["optimizer"] == 1 and meter.steps["lm"] == meter.lm_calls + meter.cache_hits
    if tracing is not None:
        _, exporter = tracing
        spans = exporter.get_finished_spans()
        chats = sum(s.name.startswith("chat ") for s in spans)
        print(f"\n{len(spans)} spans ({chats} LM calls); the tree, with repeated siblings counted:")
        print_tree(spans)
        summary["spans"] = len(spans)
        ok = ok and chats == meter.steps["lm"]
    else:
        print("\n(OpenTelemetry SDK not installed: no spans; pip install opentelemetry-sdk to see them)")

    print("\nthe last LM call:")
    last = oobleck.history(1)
    summary["last_call"] = {"model": last[0].model, "cached": last[0].cached, "latency_s": round(last[0].latency_s, 4)}

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
