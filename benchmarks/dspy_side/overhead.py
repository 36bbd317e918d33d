"""DSPy framework overhead, measured with DSPy's DummyLM (no model, no network).

Run inside the DSPy venv (see benchmarks/setup_dspy.sh):

    /work/.venv-dspy/bin/python benchmarks/dspy_side/overhead.py [--calls 2000] [--warmup 100] [--repeats 5]

(--repeats 0 measures only the per-call overhead; the start-up fields are then null.)

Prints one JSON object on stdout:
  per_call_us_mean / per_call_us_median: one dspy.Predict("question -> answer") call
      (prompt formatting, DummyLM, ChatAdapter parsing), caches off;
  import_s: best-of-N `import dspy` in a fresh interpreter, timed inside that interpreter
      (so interpreter start-up is already excluded; nothing is subtracted);
  cold_start_s: best-of-N wall time of a whole fresh interpreter that imports dspy and makes
      its first DummyLM prediction; cold_start_minus_bare_s subtracts bare_interpreter_s,
      the best-of-N wall time of `python -c pass`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# Keep DSPy/LiteLLM from trying to fetch the model cost map over the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ANSWER = "Paris"
COLD = (
    "import dspy\n"
    "from dspy.utils import DummyLM\n"
    f"dspy.configure(lm=DummyLM({{'': {{'answer': {ANSWER!r}}}}}))\n"
    "r = dspy.Predict('question -> answer')(question='What is the capital of France?')\n"
    f"assert r.answer == {ANSWER!r}, r\n"
)
IMPORT = "import time;t=time.perf_counter();import dspy;print(time.perf_counter()-t)"


def best_wall(code, n):
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    return best


def best_import(n):
    out = [
        float(subprocess.run([sys.executable, "-c", IMPORT], check=True, capture_output=True, text=True).stdout.strip())
        for _ in range(n)
    ]
    return min(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5, help="0 skips the start-up timings")
    a = ap.parse_args()

    import dspy
    from dspy.utils import DummyLM

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    # Dict mode: the key "" is a substring of every prompt, so it answers forever.
    # (List mode consumes an iterator, one dict per call, and then says "No more responses".)
    lm = DummyLM({"": {"answer": ANSWER}})
    dspy.configure(lm=lm)
    predict = dspy.Predict("question -> answer")

    def call(i):
        r = predict(question=f"What is the capital of France? ({i})")
        if r.answer != ANSWER:
            raise SystemExit(f"DummyLM output did not parse: {r!r}")

    for i in range(a.warmup):
        call(i)
    times = []
    for i in range(a.calls):
        t = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t)
    print(f"history entries on lm: {len(lm.history)}", file=sys.stderr)

    if a.repeats > 0:
        bare = best_wall("pass", a.repeats)
        cold = best_wall(COLD, a.repeats)
        imp = best_import(a.repeats)
    else:  # per-call only (benchmarks/overhead.py times start-up itself, interleaved with oobleck)
        bare = cold = imp = None

    def r4(x):
        return None if x is None else round(x, 4)

    result = {
        "framework": "dspy",
        "version": dspy.__version__,
        "python": sys.version.split()[0],
        "calls": a.calls,
        "warmup": a.warmup,
        "per_call_us_mean": round(statistics.fmean(times) * 1e6, 1),
        "per_call_us_median": round(statistics.median(times) * 1e6, 1),
        "per_call_us_p90": round(sorted(times)[int(0.9 * len(times))] * 1e6, 1),
        "import_s": r4(imp),
        "bare_interpreter_s": r4(bare),
        "cold_start_s": r4(cold),
        "cold_start_minus_bare_s": r4(None if cold is None else cold - bare),
        "repeats": a.repeats,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
