"""What watching costs per call: callbacks, OpenTelemetry spans and the history, on a scripted LM.

    PYTHONPATH=. python benchmarks/watching_overhead.py [--calls 2000] [--rounds 5] [--repeats 3]
        [--baseline /path/to/older/checkout]

One ``Predict("question -> answer")`` call on ``FakeLM`` (no cache), timed in a fresh
interpreter per setting, so what one setting imports cannot change another:

plain         no callback; opentelemetry never imported (``import oobleck`` does not import it);
              the same interpreter also times rounds with the watching hooks replaced by
              no-ops, alternating, which measures what the hooks cost when nobody watches
              (``hooks_when_unwatched_us``; finer than comparing two interpreters)
otel_api      ``opentelemetry.trace`` imported but no tracer provider set (the API alone, or
              an SDK that was never configured): no span is made
callback      one no-op ``oobleck.Callback`` registered with ``oobleck.callbacks.add``
otel_sdk      the OpenTelemetry SDK's ``TracerProvider`` with a span processor that drops
              every span: each call makes its 4 spans (module, format, chat, parse)
otel_export   the same with ``SimpleSpanProcessor(InMemorySpanExporter())``: spans kept
baseline      (with ``--baseline DIR``) the ``plain`` program run on another checkout, e.g.
              the commit before watching existed

Each interpreter runs ``--rounds`` rounds of ``--calls`` calls after a warm-up; the per-call
time of a round is its mean CPU time (``time.process_time``: the machine is shared, and wall
time there measures the other jobs as much as this one), and an interpreter's number is its
best round, as ``timeit`` reports. ``--repeats`` runs the whole set again, in a rotated order;
the table reports the median over repeats and the spread. Prints one JSON object and writes benchmarks/results/watching_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import ROOT, machine, spread, write_result

SETUP = {
    "plain": "",
    "otel_api": "import opentelemetry.trace\n",
    "callback": "import oobleck.callbacks\noobleck.callbacks.add(oobleck.Callback())\n",
    "otel_sdk": (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SpanExportResult, SimpleSpanProcessor, SpanExporter\n"
        "class Drop(SpanExporter):\n"
        "    def export(self, spans):\n"
        "        return SpanExportResult.SUCCESS\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(Drop()))\n"
        "trace.set_tracer_provider(provider)\n"
    ),
    "otel_export": (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "provider = TracerProvider()\n"
        "exporter = InMemorySpanExporter()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
    ),
}

TIMER = """
import json, sys, time
{setup}
import oobleck
lm = oobleck.FakeLM([{{"answer": "Paris"}}], cycle=True)
qa = oobleck.Predict("question -> answer", lm=lm)
for _ in range({warmup}):
    qa(question="What is the capital of France?")
def timed():
    t = time.process_time()
    for _ in range({calls}):
        qa(question="What is the capital of France?")
    return (time.process_time() - t) / {calls} * 1e6
rounds, unhooked = [], []
for _ in range({rounds}):
    rounds.append(timed())
    if {ab}:  # the same interpreter with the watching hooks taken out, round for round
        from oobleck import _watch, callbacks
        step, record = callbacks.step, _watch.record
        callbacks.step, _watch.record = (lambda *a: callbacks.UNWATCHED), (lambda *a: None)
        unhooked.append(timed())
        callbacks.step, _watch.record = step, record
spans = len(exporter.get_finished_spans()) if "exporter" in globals() else None
print(json.dumps({{"rounds_us": rounds, "unhooked_us": unhooked, "spans": spans,
                  "otel_imported": "opentelemetry.trace" in sys.modules}}))
"""


def time_setting(setup: str, path: Path, *, calls: int, rounds: int, warmup: int, ab: bool) -> dict[str, Any]:
    """Run the timer in a fresh interpreter with ``path`` first on PYTHONPATH."""
    code = TIMER.format(setup=setup, calls=calls, rounds=rounds, warmup=warmup, ab=ab)
    env = {**os.environ, "PYTHONPATH": str(path), "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to time the plain call on")
    parser.add_argument("--out", default="watching_overhead", help="results/<name>.json")
    args = parser.parse_args()

    settings: dict[str, tuple[str, Path]] = {name: (setup, ROOT) for name, setup in SETUP.items()}
    if args.baseline is not None:
        settings["baseline"] = ("", args.baseline.resolve())
    names = list(settings)
    per_repeat: dict[str, list[float]] = {name: [] for name in names}
    notes: dict[str, Any] = {}
    hooks: list[float] = []  # plain minus the same interpreter without the hooks
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            setup, path = settings[name]
            ab = name == "plain"
            out = time_setting(setup, path, calls=args.calls, rounds=args.rounds, warmup=args.warmup, ab=ab)
            per_repeat[name].append(min(out["rounds_us"]))
            if ab:
                hooks.append(min(out["rounds_us"]) - min(out["unhooked_us"]))
            notes[name] = {"otel_imported": out["otel_imported"], "spans_kept": out["spans"]}
    plain = statistics.median(per_repeat["plain"])
    table = {
        name: {
            "per_call_us": round(statistics.median(values), 2),
            "over_plain_us": round(statistics.median(values) - plain, 2),
            "spread_us": spread(values, 2),
            **notes[name],
        }
        for name, values in per_repeat.items()
    }
    write_result(
        args.out,
        {
            "benchmark": "watching_overhead",
            "what": "one Predict call on FakeLM (no cache), CPU µs per call (best round), by watching setting",
            "settings": {
                "calls": args.calls,
                "rounds": args.rounds,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "baseline": None if args.baseline is None else str(args.baseline),
            },
            "results": table,
            "hooks_when_unwatched_us": {
                "what": "in the plain interpreter, best round with the watching hooks minus best round without "
                "them (callbacks.step and the history record replaced by no-ops), per repeat",
                "median": round(statistics.median(hooks), 2),
                "spread": spread(hooks, 2),
            },
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
