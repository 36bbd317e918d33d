"""DSPy's half of benchmarks/compile_instructions.py: MIPROv2 (auto="light") and GEPA.

Run inside the DSPy venv (see benchmarks/setup_dspy.sh) against the OpenAI-compatible server
of oobleck's LocalLM.serve() (the parent script passes its URL):

    /work/.venv-dspy/bin/python benchmarks/dspy_side/compile_instructions.py --task sst2 \
        --data /work/shared/data/sst2 --base-url http://127.0.0.1:PORT/v1 \
        [--train 40 --val 20 --dev 100 --methods mipro,gepa --gepa-max-metric-calls 200] [--adapter json]

Data, signatures, metric and call counting are those of dspy_side/compile_fewshot.py (imported
from it). The task LM is SmolLM2 at temperature 0 with --max-tokens; the prompt model (MIPROv2's
proposer) and GEPA's reflection LM are the same SmolLM2 server with --prompt-max-tokens, so
their instructions are not cut at the task's short answer length. GEPA's metric returns the
exact-match score with feedback naming the expected label (the information oobleck's
ReflectiveEvolution gets from a plain metric).

Prints one JSON object on stdout (per method: dev score and per-row scores, compile and eval
calls/tokens/wall time, the final instruction and prompt length); DSPy's chatter goes to stderr.
"""

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from _dspy_common import local_lm  # noqa: E402
from compile_fewshot import TASKS, demos_of, exact_match, normalize, phase, read_jsonl  # noqa: E402
from dspy.teleprompt import GEPA, MIPROv2  # noqa: E402


def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    """Exact match with a sentence of feedback, as GEPA wants it."""
    got = getattr(pred, "label", None) if pred is not None else None
    right = got is not None and normalize(got) == normalize(gold.label)
    feedback = "Correct." if right else f"Wrong: the answer was {got!r}, the expected label is {gold.label!r}."
    return dspy.Prediction(score=float(right), feedback=feedback)


def evaluate_rows(program, devset, threads):
    ev = dspy.Evaluate(
        devset=devset,
        metric=exact_match,
        num_threads=threads,
        max_errors=10_000,
        display_progress=False,
        display_table=False,
        provide_traceback=False,
    )
    result = ev(program)
    scores = [float(bool(s)) for _, _, s in result.results]
    failed = sum(1 for _, pred, _ in result.results if getattr(pred, "label", None) is None)
    return float(result.score), scores, failed


def prompt_tokens_of(program, adapter, example, field):
    """Rough prompt tokens (4 characters a token) of the final program on one input."""
    total = 0
    for _, p in program.named_predictors():
        msgs = adapter.format(p.signature, demos=p.demos, inputs={field: example[field]})
        total += sum(len(m["content"]) if isinstance(m.get("content"), str) else 0 for m in msgs)
    return total // 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True, choices=sorted(TASKS))
    ap.add_argument("--data", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--val", type=int, default=20)
    ap.add_argument("--dev", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompt-max-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--methods", default="mipro,gepa")
    ap.add_argument("--gepa-max-metric-calls", type=int, default=0, help="0: GEPA auto='light'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--adapter",
        choices=("chat", "json"),
        default="chat",
        help="chat: DSPy's default ([[ ## field ## ]] markers, JSON fallback); json: JSONAdapter "
        "with the server declared as supporting response schemas (see _dspy_common.local_lm): "
        "the server turns the schema into a grammar",
    )
    a = ap.parse_args()

    sig, field = TASKS[a.task]
    data = Path(a.data)
    train_rows = read_jsonl(data / "train.jsonl")

    def ex(r):
        return dspy.Example(**{field: r["text"], "label": r["label"]}).with_inputs(field)

    trainset = [ex(r) for r in train_rows[: a.train]]
    valset = [ex(r) for r in train_rows[a.train : a.train + a.val]]
    devset = [ex(r) for r in read_jsonl(data / "dev.jsonl")[: a.dev]]

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    structured = a.adapter == "json"
    lm = local_lm(a.model, a.base_url, structured=structured, temperature=0, max_tokens=a.max_tokens, cache=False)
    prompt_lm = local_lm(
        a.model, a.base_url, structured=structured, temperature=1.0, max_tokens=a.prompt_max_tokens, cache=False
    )
    adapter = dspy.JSONAdapter() if a.adapter == "json" else dspy.ChatAdapter()
    dspy.configure(lm=lm, adapter=adapter)
    program = dspy.Predict(sig)

    out = {
        "framework": "dspy",
        "version": dspy.__version__,
        "task": a.task,
        "adapter": a.adapter,
        "sizes": {"train": len(trainset), "val": len(valset), "dev": len(devset)},
        "methods": {},
    }
    with contextlib.redirect_stdout(sys.stderr):
        for method in a.methods.split(","):
            m = {"compile": {}, "eval": {}}
            try:
                compiled = compile_one(method, m, a, program, trainset, valset, lm, prompt_lm)
            except Exception as exc:  # a crash inside DSPy is a result too: record it, go on
                m["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
                out["methods"][method] = m
                continue
            m["instruction"] = compiled.predictors()[0].signature.instructions
            m["demos"] = demos_of(compiled)
            m["prompt_tokens"] = prompt_tokens_of(compiled, adapter, devset[0], field)
            with phase(m["eval"]):
                m["dev_score"], m["dev_scores"], m["dev_failed"] = evaluate_rows(compiled, devset, a.threads)
            out["methods"][method] = m
    print(json.dumps(out))


def compile_one(method, m, a, program, trainset, valset, lm, prompt_lm):
    """Compile with one DSPy optimizer, counting its calls into m["compile"]."""
    if method == "mipro":
        opt = MIPROv2(
            metric=exact_match,
            prompt_model=prompt_lm,
            task_model=lm,
            auto="light",
            num_threads=a.threads,
            max_errors=10_000,
            seed=a.seed,
            max_bootstrapped_demos=4,
            max_labeled_demos=4,
        )
        with phase(m["compile"]):
            compiled = opt.compile(program, trainset=trainset, valset=valset)
        m["settings"] = {"auto": "light", "max_bootstrapped_demos": 4, "max_labeled_demos": 4}
    elif method == "gepa":
        budget = {"max_metric_calls": a.gepa_max_metric_calls} if a.gepa_max_metric_calls else {"auto": "light"}
        opt = GEPA(
            metric=feedback_metric,
            reflection_lm=prompt_lm,
            num_threads=a.threads,
            seed=a.seed,
            track_stats=False,
            **budget,
        )
        with phase(m["compile"]):
            compiled = opt.compile(program, trainset=trainset, valset=valset)
        m["settings"] = budget
    else:
        raise SystemExit(f"unknown method {method}")
    return compiled


if __name__ == "__main__":
    main()
