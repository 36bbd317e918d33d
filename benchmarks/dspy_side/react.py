"""DSPy's half of benchmarks/react.py: dspy.ReAct zero-shot, BootstrapFewShot and MIPROv2 light.

Run inside the DSPy venv against the OpenAI-compatible server of oobleck's LocalLM.serve() and
the tool endpoint of the parent process (both URLs passed by benchmarks/react.py):

    /work/.venv-dspy/bin/python benchmarks/dspy_side/react.py --set hotpotqa \
        --data /work/shared/data/hotpotqa --base-url http://127.0.0.1:P/v1 \
        --tools-url http://127.0.0.1:Q --dev 20 --train 10 --method zero_shot

The tools call the parent's endpoint, so they answer exactly what oobleck's tools answer.
``dspy.ReAct("question -> answer", tools=[...], max_iters=N)`` with DSPy's default adapter
(ChatAdapter, falling back to JSONAdapter on a parse failure). Every call of the step predictor
(``react``) is a step; a step whose predictor raised (DSPy could not read the action, even after
its JSONAdapter fallback) is an unparseable step: DSPy then ends the trajectory ("Agent failed to
select a valid tool"), or, for an AdapterParseError, the whole row fails and scores 0. Metrics are those of benchmarks/react_tools.py (same
normalisation). Prints one JSON object; DSPy's chatter goes to stderr.
"""

import argparse
import contextlib
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from _dspy_common import normalize, phase, read_jsonl  # noqa: E402
from dspy.teleprompt import BootstrapFewShot, MIPROv2  # noqa: E402

TOOLS_URL = ""
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _get(route, **params):
    url = f"{TOOLS_URL}/{route}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())["text"]


def search(query: str) -> str:
    """Search Wikipedia paragraphs; returns the two best matches as "title: text"."""
    return _get("search", query=query)


def calculate(expression: str) -> str:
    """Compute an arithmetic expression with + - * / ** % and parentheses, e.g. (12 + 3) * 4."""
    return _get("calculate", expression=expression)


def number_of(text):
    found = _NUMBER.findall(str(text).replace(",", ""))
    return float(found[-1]) if found else None


def token_f1(gold, answer):
    g, p = normalize(gold).split(), normalize(answer).split()
    common = sum(min(g.count(t), p.count(t)) for t in set(g) & set(p))
    if not g or not p or not common:
        return float(g == p)
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def score(kind, gold, pred):
    answer = getattr(pred, "answer", None) if pred is not None else None
    if answer is None:
        return {"em": 0.0, "f1": 0.0}
    if kind == "gsm8k":
        got, want = number_of(answer), number_of(gold)
        ok = float(got is not None and want is not None and abs(got - want) < 1e-6)
        return {"em": ok, "f1": ok}
    return {"em": float(normalize(gold) == normalize(answer)), "f1": token_f1(gold, answer)}


_STEPS = threading.local()


def counting(forward):
    """Wrap the step predictor's forward: count each step, and each step whose action failed.

    A step fails when its predictor raises: the adapters could not read the action (DSPy's
    ReAct then either ends the trajectory with "Agent failed to select a valid tool" or, for an
    AdapterParseError, lets it end the whole row) or the prompt no longer fits the context.
    """

    def wrapped(*args, **kwargs):
        _STEPS.steps = getattr(_STEPS, "steps", 0) + 1
        try:
            return forward(*args, **kwargs)
        except Exception as exc:
            if "ContextWindow" in type(exc).__name__:
                _STEPS.context = getattr(_STEPS, "context", 0) + 1
            else:
                _STEPS.unparsed = getattr(_STEPS, "unparsed", 0) + 1
            raise

    return wrapped


def run_rows(program, devset, kind, threads):
    """Run every dev row (threads), returning per-row scores and step counts."""
    import concurrent.futures

    program.react.forward = counting(program.react.forward)

    def one(ex):
        _STEPS.steps = _STEPS.unparsed = _STEPS.context = 0
        try:
            pred = program(question=ex.question)
            error = None
        except Exception as exc:  # a crash of a row is a failed row (scored 0)
            pred, error = None, f"{type(exc).__name__}: {str(exc)[:200]}"
        row = {**score(kind, ex.answer, pred), "steps": _STEPS.steps, "error": error}
        return {**row, "unparsed": _STEPS.unparsed, "context": _STEPS.context}

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        rows = list(pool.map(one, devset))
    return rows


def main():
    global TOOLS_URL
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", required=True, choices=["hotpotqa", "gsm8k"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--tools-url", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dev", type=int, default=20)
    ap.add_argument("--train", type=int, default=10)
    ap.add_argument("--max-iters", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--demos", type=int, default=2)
    ap.add_argument("--method", required=True, choices=["zero_shot", "bootstrap", "mipro"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    TOOLS_URL = a.tools_url.rstrip("/")

    def ex(r):
        return dspy.Example(question=r["question"], answer=str(r["answer"])).with_inputs("question")

    trainset = [ex(r) for r in read_jsonl(os.path.join(a.data, "train.jsonl"))[: a.train]]
    devset = [ex(r) for r in read_jsonl(os.path.join(a.data, "dev.jsonl"))[: a.dev]]
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM(
        f"openai/{a.model}", api_base=a.base_url, api_key="none", temperature=0, max_tokens=a.max_tokens, cache=False
    )
    dspy.configure(lm=lm)
    tool = search if a.set == "hotpotqa" else calculate
    program = dspy.ReAct("question -> answer", tools=[tool], max_iters=a.max_iters)

    def metric(gold, pred, trace=None):
        s = score(a.set, gold.answer, pred)
        return s["f1"] >= 0.5 if a.set == "hotpotqa" else bool(s["em"])

    m = {"compile": {"calls": 0, "wall_s": 0.0}, "eval": {}}
    out = {"framework": "dspy", "version": dspy.__version__, "set": a.set, "method": a.method}
    with contextlib.redirect_stdout(sys.stderr):
        try:
            if a.method == "bootstrap":
                opt = BootstrapFewShot(
                    metric=metric, max_bootstrapped_demos=a.demos, max_labeled_demos=0, max_rounds=1, max_errors=10_000
                )
                with phase(m["compile"]):
                    program = opt.compile(program, trainset=trainset)
                m["settings"] = {"max_bootstrapped_demos": a.demos, "max_labeled_demos": 0}
            elif a.method == "mipro":
                opt = MIPROv2(
                    metric=metric,
                    auto="light",
                    num_threads=a.threads,
                    max_errors=10_000,
                    seed=a.seed,
                    max_bootstrapped_demos=a.demos,
                    max_labeled_demos=0,
                )
                with phase(m["compile"]):
                    program = opt.compile(program, trainset=trainset)
                m["settings"] = {"auto": "light", "max_bootstrapped_demos": a.demos, "max_labeled_demos": 0}
            m["demos"] = {name: len(p.demos) for name, p in program.named_predictors()}
            t0 = time.perf_counter()
            with phase(m["eval"]):
                rows = run_rows(program, devset, a.set, a.threads)
            m["rows"] = rows
            m["unparsed_steps"] = sum(r["unparsed"] for r in rows)
            m["context_stops"] = sum(r["context"] for r in rows)
            m["seconds_per_row"] = round((time.perf_counter() - t0) / max(1, len(devset)), 2)
        except Exception as exc:  # a crash inside DSPy is a result too: record it
            m["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
    out["result"] = m
    print(json.dumps(out))


if __name__ == "__main__":
    main()
