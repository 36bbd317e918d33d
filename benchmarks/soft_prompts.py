"""Soft prompts vs hard prompts on SmolLM2-135M (CPU), plus TransformersLM throughput.

For SST-2 and TREC, on the same dev rows: zero-shot generation, zero-shot label scoring
(``mode="score"``), the best of a few labelled demo sets (a small hard-prompt compile, chosen
on held-out rows, scored), then each soft-prompt method trained briefly on the train rows with
the metric choosing the checkpoint on the val rows: prompt tuning initialised from the compiled
hard prompt (the chain), prefix tuning and P-tuning (MLP) on top of the zero-shot prompt. Then
multi-task prompt tuning over a mix of SST-2, TREC and TweetEval irony (one shared prompt,
adapted to each). Each accuracy has a 95% Wilson interval; trainable parameters and training
seconds are this CPU's. Last, generation throughput of TransformersLM batched vs one call at a
time, beside the embedded llama.cpp LocalLM on the same prompts.

The machine has 2 cores shared with other jobs, so every run is small: few dev rows, a few
training steps with a time cap per method. Read the intervals before the point estimates.

    nice -n 10 python benchmarks/soft_prompts.py            # ~25-30 min on 2 busy cores
    python benchmarks/soft_prompts.py --quick               # a smoke run
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))

from _common import DATA, TASKS, machine, read_jsonl, wilson, write_result  # noqa: E402

import oobleck  # noqa: E402
from oobleck import Example, Predict  # noqa: E402
from oobleck.adapters.template import TemplateAdapter  # noqa: E402
from oobleck.evaluation import evaluate  # noqa: E402
from oobleck.optimize import LabeledFewShot  # noqa: E402

# PEFT's own published reference points for these methods (what the papers/docs report at
# their scale, not comparable to a 135M model trained for a few steps on a busy CPU).
REFERENCE = {
    "peft_example": (
        "PEFT's prompt-based methods guide (docs/source/task_guides/prompt_based_methods.md), bloomz-560m on RAFT "
        "twitter_complaints: trainable params p-tuning 300,288 (0.054%, 20 tokens, encoder 128), prefix tuning "
        "983,040 (0.175%, 20 tokens), prompt tuning 8,192 (0.0015%, TEXT init); the guide reports no accuracy"
    ),
    "prompt_tuning": "Lester et al. 2021: matches full fine-tuning on SuperGLUE at T5-XXL (11B) scale",
    "prefix_tuning": "Li & Liang 2021: ~0.1% parameters, comparable to fine-tuning on table-to-text, better in low data",
    "p_tuning": "Liu et al. 2022 (P-tuning v2): matches fine-tuning with 0.1%-3% tuned parameters, 300M-10B models",
    "multitask_prompt_tuning": "Wang et al. 2023 (MPT): 0.035% task-specific parameters, beats full fine-tuning on some of 23 datasets",
    "source": "/work/shared/reference/anchors.md sections 3.2 and 4.4 for the papers",
}

EXTRA_TASKS = {
    "irony": {
        "instructions": "Is this tweet ironic?",
        "input": "text",
        "labels": ("irony", "non_irony"),
        "folder": "tweeteval/irony",
    },
}

log = logging.getLogger("soft_prompts")


def spec(task: str) -> dict[str, Any]:
    return {**TASKS[task], "folder": task} if task in TASKS else EXTRA_TASKS[task]


def task_signature(task: str) -> oobleck.Signature:
    s = spec(task)
    labels = ", ".join(repr(x) for x in s["labels"])
    return oobleck.Signature(f"{s['input']} -> label: Literal[{labels}]").with_instructions(s["instructions"])


def rows(task: str, split: str) -> list[Example]:
    s = spec(task)
    return [
        Example({s["input"]: r["text"], "label": r["label"]}).with_inputs(s["input"])
        for r in read_jsonl(DATA / s["folder"] / f"{split}.jsonl")
    ]


def metric(example: Example, prediction: Any, trace: Any = None) -> float:
    return float(getattr(prediction, "label", None) == example.label)


def accuracy(program: Any, dev: list[Example]) -> dict[str, Any]:
    started = time.perf_counter()
    result = evaluate(program, dev, metric, num_threads=8, progress=False, max_errors=None)
    correct = int(round(sum(result.scores)))
    return {
        "accuracy": round(100 * correct / len(dev), 1),
        "ci95": wilson(correct, len(dev)),
        "n": len(dev),
        "errors": result.errors,
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


def soft_entry(tuned: Any, dev: list[Example], seconds: float) -> dict[str, Any]:
    scores = tuned.provenance["scores"]["predictors"]["self"]
    return {
        **accuracy(tuned, dev),
        "trainable_params": scores["trainable_params"],
        "train_seconds": round(seconds, 1),
        "steps": scores["steps"],
        "best_step": scores["best_step"],
        "val_history": scores["history"],
        "first_loss": scores["first_loss"],
        "last_loss": scores["last_loss"],
        "virtual_tokens": tuned.soft_prompt.num_virtual_tokens,
        "covers_messages": tuned.soft_prompt.covers,
    }


def run_task(task: str, lm: Any, adapter: Any, args: argparse.Namespace) -> dict[str, Any]:
    from oobleck.soft import PrefixTuning, PromptTuning, PTuning

    sig = task_signature(task)
    train_all = rows(task, "train")
    train, val = train_all[: args.train], train_all[args.train : args.train + args.val]
    dev = rows(task, "dev")[: args.dev]
    out: dict[str, Any] = {"train_rows": len(train), "val_rows": len(val), "dev_rows": len(dev)}
    generate = Predict(sig, lm=lm, adapter=adapter, max_tokens=16)
    score = Predict(sig, lm=lm, adapter=adapter, mode="score")
    out["zero_shot_generate"] = accuracy(generate, dev)
    log.info("%s zero-shot generate %s", task, out["zero_shot_generate"])
    out["zero_shot_score"] = accuracy(score, dev)
    log.info("%s zero-shot score %s", task, out["zero_shot_score"])

    # A small hard-prompt compile: labelled demo sets (k=4) for a few seeds, the best on val.
    started = time.perf_counter()
    candidates = []
    for seed in range(args.candidates):
        program = LabeledFewShot(k=4).compile(score, trainset=train, seed=seed)
        candidates.append((accuracy(program, val)["accuracy"], -seed, program))
    val_acc, neg_seed, hard = max(candidates, key=lambda c: (c[0], c[1]))
    out["hard_compile_score"] = {
        **accuracy(hard, dev),
        "val_accuracy": val_acc,
        "seed": -neg_seed,
        "compile_seconds": round(time.perf_counter() - started, 1),
        "how": f"best of {args.candidates} LabeledFewShot(k=4) demo sets on val, mode='score'",
    }
    log.info("%s hard compile %s", task, out["hard_compile_score"])

    common = {
        "metric": metric,
        "steps": args.steps,
        "max_time_s": args.max_train_s,
        "batch_size": 4,
        "eval_every": max(1, args.steps // 2),
        "progress": False,
        "num_threads": 8,
    }
    methods = [
        ("prompt_tuning_from_hard_compile", hard, PromptTuning(init="hard_prompt", **common)),
        ("prefix_tuning", score, PrefixTuning(num_virtual_tokens=10, **common)),
        ("p_tuning_mlp", score, PTuning(num_virtual_tokens=10, encoder="MLP", **common)),
    ]
    for name, base, optimizer in methods:
        started = time.perf_counter()
        tuned = optimizer.compile(base, trainset=train, valset=val, seed=0)
        out[name] = soft_entry(tuned, dev, time.perf_counter() - started)
        log.info("%s %s %s", task, name, out[name])
    return out


def run_multitask(lm: Any, adapter: Any, args: argparse.Namespace) -> dict[str, Any]:
    from oobleck.soft import MultitaskPromptTuning, Task

    names = ["sst2", "trec", "irony"]
    tasks, devs = {}, {}
    for name in names:
        train_all = rows(name, "train")
        program = Predict(task_signature(name), lm=lm, adapter=adapter, mode="score")
        tasks[name] = Task(program, train_all[: args.train], train_all[args.train : args.train + args.val])
        devs[name] = rows(name, "dev")[: args.mt_dev]
    optimizer = MultitaskPromptTuning(
        metric=metric,
        steps=args.steps,
        adapt_steps=max(1, args.steps // 2),
        max_time_s=args.max_train_s,
        batch_size=4,
        num_virtual_tokens=10,
        eval_every=args.steps,
        progress=False,
        num_threads=8,
    )
    started = time.perf_counter()
    adapted = optimizer.compile_tasks(tasks, seed=0)
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"tasks": names, "train_seconds_total": round(seconds, 1), "dev_rows_per_task": args.mt_dev}
    for name in names:
        scores = adapted[name].provenance["scores"]
        out[name] = {
            "zero_shot_score": accuracy(tasks[name].program, devs[name]),
            "mpt": {
                **accuracy(adapted[name], devs[name]),
                "trainable_params_adapt": scores.get("trainable_params"),
                "val_history": scores.get("history"),
            },
        }
        log.info("multitask %s %s", name, out[name])
    source = adapted[names[0]].provenance["scores"]
    out["note"] = "shared source prompt trained on all three tasks, then adapted to each; same dev rows as zero-shot"
    out["source_provenance_keys"] = sorted(source)
    return out


def throughput(tlm: Any, n: int, max_tokens: int) -> dict[str, Any]:
    from oobleck import LocalLM

    prompts = [
        f"Write one short sentence about this: {r['text'][:80]}" for r in read_jsonl(DATA / "sst2" / "dev.jsonl")[:n]
    ]
    local = LocalLM(temperature=0.0, max_tokens=max_tokens, n_parallel=4)
    out: dict[str, Any] = {"prompts": n, "max_tokens": max_tokens}

    def measure(name: str, lm: Any, threads: int) -> None:
        from oobleck.lm.types import LMRequest, Message

        def call(p: str) -> int:
            request = LMRequest(
                messages=(Message(role="user", content=p),), temperature=0.0, max_tokens=max_tokens, cache="off"
            )
            return lm.complete(request).usage.completion_tokens

        lm.complete(LMRequest(messages=(Message(role="user", content="hi"),), max_tokens=2))  # load the model
        started = time.perf_counter()
        if threads == 1:
            tokens = sum(call(p) for p in prompts)
        else:
            with ThreadPoolExecutor(threads) as pool:
                tokens = sum(pool.map(call, prompts))
        seconds = time.perf_counter() - started
        out[name] = {
            "seconds": round(seconds, 1),
            "completion_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1),
        }
        log.info("throughput %s %s", name, out[name])

    measure("transformers_batched_8_threads", tlm, 8)
    measure("transformers_one_at_a_time", tlm, 1)
    measure("llamacpp_local_4_slots_8_threads", local, 8)
    measure("llamacpp_local_one_at_a_time", local, 1)
    local.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=int, default=40, help="dev rows per task")
    parser.add_argument("--mt-dev", type=int, default=24, help="dev rows per task of the multi-task mix")
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--val", type=int, default=12)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-train-s", type=float, default=90.0, help="time cap per soft-prompt training run")
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--throughput-prompts", type=int, default=12)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: tasks,multitask,throughput")
    args = parser.parse_args(argv)
    if args.quick:
        args.dev, args.mt_dev, args.train, args.val, args.steps, args.candidates, args.throughput_prompts = (
            6,
            4,
            8,
            4,
            2,
            1,
            4,
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from oobleck.lm.transformers import TransformersLM

    skip = set(filter(None, args.skip.split(",")))
    started = time.perf_counter()
    lm = TransformersLM(max_batch_size=8)
    adapter = TemplateAdapter(output="prefix")
    result: dict[str, Any] = {
        "benchmark": "soft_prompts",
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to float32) via TransformersLM, 1 torch thread",
        "adapter": "TemplateAdapter(output='prefix') for every condition (short prompts keep CPU training affordable)",
        "command": "nice -n 10 python benchmarks/soft_prompts.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": vars(args),
        "reference": REFERENCE,
    }
    name = "soft_prompts_quick" if args.quick else "soft_prompts"

    def save(partial: bool) -> None:
        # written after every part, so a run cut short still leaves what it measured
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        result["complete"] = not partial
        result["machine"] = machine()
        write_result(name, result)

    if "tasks" not in skip:
        result["tasks"] = {}
        for task in ("sst2", "trec"):
            result["tasks"][task] = run_task(task, lm, adapter, args)
            save(partial=True)
    if "multitask" not in skip:
        result["multitask"] = run_multitask(lm, adapter, args)
        save(partial=True)
    if "throughput" not in skip:
        result["throughput"] = throughput(lm, args.throughput_prompts, 32)
    save(partial=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
