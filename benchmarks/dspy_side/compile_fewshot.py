"""DSPy's half of benchmarks/compile_fewshot.py: zero-shot vs BootstrapFewShotWithRandomSearch.

Run inside the DSPy venv (see benchmarks/setup_dspy.sh) against an OpenAI-compatible server
serving SmolLM2-135M-Instruct (the parent script passes the URL of oobleck's LocalLM.serve()):

    /work/.venv-dspy/bin/python benchmarks/dspy_side/compile_fewshot.py --task sst2 \
        --data /work/shared/data/sst2 --base-url http://127.0.0.1:PORT/v1 \
        [--train 100 --val 50 --dev 200 --candidates 6 --adapter chat|json --threads 4]

Data (identical to the oobleck side): train = the first --train rows of train.jsonl, val = the
next --val rows of train.jsonl, dev = the first --dev rows of dev.jsonl.

Counting: DSPy's disk and memory caches are off and the LM has cache=False, so every LM call
reaches the server. Calls and tokens are read from dspy's global LM history (one entry per
call, with the server's usage), cleared before each phase; the ChatAdapter's silent JSON
fallback is a second call and is counted.

Prints one JSON object on stdout; DSPy's own chatter goes to stderr.
"""

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Literal

# Keep LiteLLM/DSPy from trying to fetch the model cost map over the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from _dspy_common import normalize, phase, read_jsonl  # noqa: E402
from dspy.teleprompt import BootstrapFewShotWithRandomSearch  # noqa: E402


class SST2(dspy.Signature):
    """Classify the sentiment of a movie review sentence."""

    text: str = dspy.InputField()
    label: Literal["positive", "negative"] = dspy.OutputField()


class TREC(dspy.Signature):
    """Classify the question by the type of its expected answer."""

    question: str = dspy.InputField()
    label: Literal["abbreviation", "description", "entity", "human", "location", "numeric"] = dspy.OutputField()


class TweetSentiment(dspy.Signature):
    """Classify the sentiment of the tweet."""

    text: str = dspy.InputField()
    label: Literal["negative", "neutral", "positive"] = dspy.OutputField()


def _banking77():
    """Banking77's signature: its 77 intents as a Literal, read beside the data (--data)."""
    data = Path(sys.argv[sys.argv.index("--data") + 1]) if "--data" in sys.argv else None
    path = data / "labels.json" if data else None
    if path is None or not path.is_file():  # another task's folder: this signature is not used
        return None
    labels = tuple(json.loads(path.read_text(encoding="utf-8")))

    class Banking77(dspy.Signature):
        """Classify the banking customer's message by its intent."""

        text: str = dspy.InputField()
        label: Literal[labels] = dspy.OutputField()  # type: ignore[valid-type]

    return Banking77


TASKS = {
    "sst2": (SST2, "text"),
    "trec": (TREC, "question"),
    "tweet_sentiment": (TweetSentiment, "text"),
    "banking77": (_banking77(), "text"),
}


def exact_match(example, pred, trace=None):
    """oobleck's ExactMatch(field="label"), as a DSPy metric."""
    got = getattr(pred, "label", None) if pred is not None else None
    return got is not None and normalize(got) == normalize(example.label)


def evaluate(program, devset, threads, max_errors):
    ev = dspy.Evaluate(
        devset=devset,
        metric=exact_match,
        num_threads=threads,
        max_errors=max_errors,
        display_progress=False,
        display_table=False,
        provide_traceback=False,
    )
    result = ev(program)
    failed = sum(1 for _, pred, _ in result.results if getattr(pred, "label", None) is None)
    return float(result.score), failed


def demos_of(program):
    out = []
    for _, p in program.named_predictors():
        for d in p.demos:
            out.append({"label": d.get("label"), "bootstrapped": bool(d.get("augmented", False))})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--data", required=True, help="dataset folder with train.jsonl and dev.jsonl")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--adapter", default="chat", choices=("chat", "json"))
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--val", type=int, default=50)
    ap.add_argument("--dev", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=6, help="num_candidate_programs (besides the 3 fixed ones)")
    ap.add_argument("--max-bootstrapped", type=int, default=4)
    ap.add_argument("--max-labeled", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--max-errors", type=int, default=10_000)
    ap.add_argument("--skip-zero-shot", action="store_true", help="do not evaluate the uncompiled program on dev")
    a = ap.parse_args()

    sig, field = TASKS[a.task]
    data = Path(a.data)
    train_rows = read_jsonl(data / "train.jsonl")
    dev_rows = read_jsonl(data / "dev.jsonl")[: a.dev]

    def ex(r):
        return dspy.Example(**{field: r["text"], "label": r["label"]}).with_inputs(field)

    trainset = [ex(r) for r in train_rows[: a.train]]
    valset = [ex(r) for r in train_rows[a.train : a.train + a.val]]
    devset = [ex(r) for r in dev_rows]

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM(
        f"openai/{a.model}", api_base=a.base_url, api_key="none", temperature=0, max_tokens=a.max_tokens, cache=False
    )
    adapter = dspy.JSONAdapter() if a.adapter == "json" else dspy.ChatAdapter()
    dspy.configure(lm=lm, adapter=adapter)
    program = dspy.Predict(sig)

    out = {
        "framework": "dspy",
        "version": dspy.__version__,
        "task": a.task,
        "adapter": a.adapter,
        "model": a.model,
        "max_tokens": a.max_tokens,
        "sizes": {"train": len(trainset), "val": len(valset), "dev": len(devset)},
        "methods": {},
    }

    with contextlib.redirect_stdout(sys.stderr):  # DSPy prints its progress on stdout
        if not a.skip_zero_shot:
            m = {
                "compile": {"calls": 0, "tokens": 0, "prompt_tokens": 0, "completion_tokens": 0, "wall_s": 0.0},
                "eval": {},
            }
            with phase(m["eval"]):
                m["dev_score"], m["dev_failed"] = evaluate(program, devset, a.threads, a.max_errors)
            out["methods"]["zero_shot"] = m

        m = {"compile": {}, "eval": {}}
        opt = BootstrapFewShotWithRandomSearch(
            metric=exact_match,
            max_bootstrapped_demos=a.max_bootstrapped,
            max_labeled_demos=a.max_labeled,
            num_candidate_programs=a.candidates,
            num_threads=a.threads,
            max_errors=a.max_errors,
        )
        with phase(m["compile"]):
            compiled = opt.compile(program, trainset=trainset, valset=valset)
        m["candidates"] = sorted(
            ({"seed": c["seed"], "val_score": float(c["score"])} for c in compiled.candidate_programs),
            key=lambda c: c["seed"],
        )
        # The compiled program is the first candidate with the best score (DSPy keeps the
        # first of equal scores); candidate_programs is sorted by score, stable by seed.
        m["best_seed"] = compiled.candidate_programs[0]["seed"]
        m["best_val_score"] = float(compiled.candidate_programs[0]["score"])
        m["demos"] = demos_of(compiled)
        # Every candidate costs one call per val row; the rest are teacher runs plus ChatAdapter's JSON fallbacks.
        m["extra_calls"] = m["compile"]["calls"] - len(compiled.candidate_programs) * len(valset)
        with phase(m["eval"]):
            m["dev_score"], m["dev_failed"] = evaluate(compiled, devset, a.threads, a.max_errors)
        out["methods"]["random_search"] = m

    print(json.dumps(out))


if __name__ == "__main__":
    main()
