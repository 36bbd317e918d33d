"""The dry-run estimate is within 2x of what the compile then spends, for every optimizer.

Each optimizer is compiled on a FakeLM (4 characters a token, as the estimate counts) with the
dry run first: its expected prompt tokens, completion tokens and LM calls must each be within
[0.5, 2] of the compile's usage, and the calls within the estimate's bounds. Before issue 22 the
estimate priced every run as the starting program's (no demos, no proposer calls, every trial
run): RandomSearch spent 2.0x its estimate, JointSearch 0.31x, BootstrapFewShot 0.42x.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _opt_helpers import keyword_answer, sentiment_rows
from test_instruction_search import instruction_sensitive
from test_joint_search import joint_lm
from test_proposer import Review
from test_reflective import reflective_lm, with_feedback

from oobleck import FakeLM, Predict
from oobleck.metrics import exact_match
from oobleck.optimize import (
    Auto,
    BootstrapFewShot,
    InstructionSearch,
    JointSearch,
    Optimizer,
    RandomSearch,
    ReflectiveEvolution,
)

Case = tuple[Callable[[], Optimizer], Callable[..., Any], int]


def _joint() -> Optimizer:
    pytest.importorskip("optuna")
    return JointSearch(
        exact_match, auto=None, num_trials=12, num_instructions=2, num_demo_sets=3, minibatch_size=8,
        full_eval_every=3, max_bootstrapped_demos=1, max_labeled_demos=1,
    )  # fmt: skip


CASES: dict[str, Case] = {
    "bootstrap": (
        lambda: BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=1),
        keyword_answer,
        6,
    ),
    "bootstrap_many_shots": (lambda: BootstrapFewShot(exact_match, max_bootstrapped_demos=4), keyword_answer, 12),
    "random_search": (lambda: RandomSearch(exact_match, num_candidates=3, max_bootstrapped_demos=2), keyword_answer, 6),
    "random_search_4_demos": (
        lambda: RandomSearch(exact_match, num_candidates=2, max_bootstrapped_demos=4, max_labeled_demos=4),
        keyword_answer,
        6,
    ),
    "instruction_search": (
        lambda: InstructionSearch(exact_match, breadth=2, depth=2, formats=["one_line", "chat"]),
        instruction_sensitive,
        6,
    ),
    "joint_search": (_joint, joint_lm, 6),
    "reflective": (lambda: ReflectiveEvolution(with_feedback, iterations=2, minibatch_size=4), reflective_lm, 6),
    "auto": (lambda: Auto(exact_match, budget=400), joint_lm, 10),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_estimate_is_within_2x_of_the_spend(name: str) -> None:
    make, answer, n_train = CASES[name]
    data = sentiment_rows()
    train, val = data[:n_train], (data[n_train:] or None)
    if name == "auto":
        pytest.importorskip("optuna")
    estimate = make().compile(Predict(Review, lm=FakeLM(answer)), trainset=train, valset=val, dry_run=True)
    compiled = make().compile(Predict(Review, lm=FakeLM(answer)), trainset=train, valset=val, seed=1, progress=False)
    spent = compiled.compile_usage
    assert spent is not None and spent.calls > 0
    ratios = {
        "prompt_tokens": spent.prompt_tokens / estimate.prompt_tokens,
        "completion_tokens": spent.completion_tokens / estimate.completion_tokens,
        "lm_calls": (spent.calls + spent.cache_hits) / estimate.expected_lm_calls,
    }
    off = {k: round(r, 2) for k, r in ratios.items() if not 0.5 <= r <= 2.0}
    assert not off, f"{name}: spent/estimated outside [0.5, 2]: {off} (estimate {estimate}; spent {spent})"
    assert estimate.min_lm_calls <= spent.calls + spent.cache_hits <= estimate.lm_calls


def test_the_estimate_counts_the_demos_the_candidates_carry() -> None:
    """More labelled demos per candidate: more prompt tokens expected, the runs unchanged."""
    data = sentiment_rows()
    program = Predict(Review, lm=FakeLM(keyword_answer))
    few, many = (
        RandomSearch(exact_match, num_candidates=2, max_labeled_demos=k).estimate(
            program, trainset=data[:6], valset=data[6:]
        )
        for k in (1, 5)
    )
    assert few.program_runs == many.program_runs and few.lm_calls == many.lm_calls
    assert many.prompt_tokens > 1.25 * few.prompt_tokens
