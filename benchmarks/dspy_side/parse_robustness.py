"""How often DSPy's adapters fail to parse a small local model's output on a classification task.

Run inside the DSPy venv (see benchmarks/setup_dspy.sh) against an OpenAI-compatible server
(e.g. serve_smollm2.py):

    /work/.venv-dspy/bin/python benchmarks/dspy_side/parse_robustness.py \
        --data /work/shared/data/sst2 --task sst2 --demos 0 \
        --base-url http://127.0.0.1:18123/v1 --limit 50 [--adapter chat|json]

--data is a dataset folder (dev.jsonl is evaluated, train.jsonl gives demos) or a JSONL file to
evaluate (demos then come from train.jsonl next to it).
With --demos K, K labelled train rows are attached as predictor.demos: the first rows in file
order such that no label is used more than ceil(K / #labels) times (sst2, K=4: 2 + 2;
trec, K=4: the first 4 rows with distinct labels).

Counting, per example:
  lm_calls      LM history entries the prediction added (each example runs on its own LM copy,
                so counts stay exact with --threads > 1);
  fallbacks     ChatAdapter examples that needed more than one LM call: ChatAdapter retries once
                with JSONAdapter after an AdapterParseError (a second LM call);
  parse_failures  examples whose prediction still raised a parse error (AdapterParseError,
                or a ValueError/pydantic error from parsing); other exceptions go to other_errors.
accuracy counts failures and errors as wrong. Prints one JSON object on stdout.
"""

import argparse
import collections
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

# Keep LiteLLM/DSPy from trying to fetch the model cost map over the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.utils.exceptions import AdapterParseError  # noqa: E402

SST2_LABELS = ("positive", "negative")
TREC_LABELS = ("abbreviation", "description", "entity", "human", "location", "numeric")


class SST2(dspy.Signature):
    """Classify the sentiment of a movie review sentence."""

    text: str = dspy.InputField()
    label: Literal["positive", "negative"] = dspy.OutputField()


class TREC(dspy.Signature):
    """Classify the question by the type of its expected answer."""

    question: str = dspy.InputField()
    label: Literal["abbreviation", "description", "entity", "human", "location", "numeric"] = dspy.OutputField()


TASKS = {"sst2": (SST2, "text", SST2_LABELS), "trec": (TREC, "question", TREC_LABELS)}


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pick_demos(rows, k, labels):
    cap = math.ceil(k / len(labels)) if k else 0
    used, out = collections.Counter(), []
    for r in rows:
        if len(out) == k:
            break
        if used[r["label"]] < cap:
            used[r["label"]] += 1
            out.append(r)
    return out


def is_parse_error(e):
    if isinstance(e, AdapterParseError):
        return True
    try:
        import pydantic

        return isinstance(e, (ValueError, pydantic.ValidationError))
    except ImportError:
        return isinstance(e, ValueError)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--demos", type=int, default=0, choices=(0, 4))
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--limit", type=int, default=0, help="evaluate the first N rows (0 = all)")
    ap.add_argument("--adapter", default="chat", choices=("chat", "json"))
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()

    sig, in_field, labels = TASKS[a.task]
    data = Path(a.data)
    eval_path = data / "dev.jsonl" if data.is_dir() else data
    train_path = (data if data.is_dir() else data.parent) / "train.jsonl"
    rows = read_jsonl(eval_path)
    if a.limit:
        rows = rows[: a.limit]

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM(
        f"openai/{a.model}", api_base=a.base_url, api_key="none", temperature=0, max_tokens=a.max_tokens, cache=False
    )
    adapter = dspy.JSONAdapter() if a.adapter == "json" else dspy.ChatAdapter()
    dspy.configure(lm=lm, adapter=adapter)

    predictor = dspy.Predict(sig)
    demo_rows = pick_demos(read_jsonl(train_path), a.demos, labels) if a.demos else []
    predictor.demos = [
        dspy.Example(**{in_field: r["text"], "label": r["label"]}).with_inputs(in_field) for r in demo_rows
    ]
    print(f"eval={eval_path} n={len(rows)} demos={[r['label'] for r in demo_rows]}", file=sys.stderr)

    def run(row):
        ex_lm = lm.copy()  # own history, so per-example call counts are exact under threads
        pred, err = None, None
        with dspy.context(lm=ex_lm):
            try:
                pred = predictor(**{in_field: row["text"]})
            except Exception as e:  # noqa: BLE001 - we classify every failure below
                err = e
        return row, pred, err, len(ex_lm.history)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, a.threads)) as pool:
        results = list(pool.map(run, rows))
    elapsed = time.perf_counter() - t0

    parse_failures = other_errors = fallbacks = fallback_rescued = correct = lm_calls = 0
    error_types, pred_labels = collections.Counter(), collections.Counter()
    for row, pred, err, calls in results:
        lm_calls += calls
        fell_back = a.adapter == "chat" and calls > 1
        fallbacks += fell_back
        if err is not None:
            error_types[type(err).__name__] += 1
            if is_parse_error(err):
                parse_failures += 1
            else:
                other_errors += 1
                print(f"non-parse error: {type(err).__name__}: {str(err)[:200]}", file=sys.stderr)
            continue
        fallback_rescued += fell_back
        pred_labels[str(pred.label)] += 1
        correct += str(pred.label).strip().lower() == row["label"]

    n = len(rows)
    print(
        json.dumps(
            {
                "framework": "dspy",
                "version": dspy.__version__,
                "task": a.task,
                "adapter": a.adapter,
                "demos": a.demos,
                "n": n,
                "parse_failures": parse_failures,
                "failure_rate": round(parse_failures / n, 4) if n else None,
                "accuracy": round(correct / n, 4) if n else None,
                "lm_calls": lm_calls,
                "fallbacks": fallbacks,
                "fallback_rescued": fallback_rescued,
                "other_errors": other_errors,
                "error_types": dict(error_types),
                "pred_label_counts": dict(pred_labels),
                "model": a.model,
                "max_tokens": a.max_tokens,
                "elapsed_s": round(elapsed, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
