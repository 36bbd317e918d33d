"""Dry-run cost estimates: what a compile will spend, worked out without calling any LM.

A program is rendered on one example with no LM (``Module.render_calls``); the calls and prompt
text of that render, times the program runs an optimizer plans, give a :class:`CostEstimate`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oobleck.example import Example
    from oobleck.module import Module

__all__ = ["CostEstimate", "calls_per_run", "tokens_per_run"]


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What a compile is planned to cost, worked out without calling any LM.

    Attributes:
        program_runs: the most program runs the compile may make.
        lm_calls: the most LM calls (program runs times calls per run; parse retries excluded).
        min_lm_calls: the fewest LM calls it can make if nothing is cached.
        prompt_tokens: a rough estimate of the prompt tokens of those calls (4 characters a token).
        breakdown: program runs per phase (e.g. ``{"bootstrap": 40, "validation": 220}``).
    """

    program_runs: int
    lm_calls: int
    min_lm_calls: int
    prompt_tokens: int
    breakdown: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON data."""
        return asdict(self)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v} runs" for k, v in self.breakdown.items())
        return (
            f"up to {self.lm_calls} LM calls (at least {self.min_lm_calls}), ~{self.prompt_tokens} prompt tokens; "
            f"{self.program_runs} program runs ({parts})"
        )


def _dry_run(program: Module, example: Example | None) -> list[Any] | None:
    """The calls of one dry run, or None (with a warning) when the program cannot dry-run."""
    if example is None:
        return None
    try:
        return program.render_calls(**example.inputs())
    except Exception as exc:  # noqa: BLE001 - a program whose logic needs real outputs
        warnings.warn(
            f"could not dry-run {type(program).__name__} for the cost estimate ({type(exc).__name__}: {exc}); "
            "calls and tokens are estimated from its predictors' templates instead",
            stacklevel=3,
        )
        return None


def calls_per_run(program: Module, example: Example | None) -> int:
    """How many predictor calls one run makes, from a dry render (no LM is called).

    A program that cannot dry-run (its logic needs real outputs) counts each predictor once,
    and a warning says so.
    """
    calls = _dry_run(program, example)
    if calls is not None:
        return max(len(calls), 1)
    return max(len(program.named_predictors()), 1)


def tokens_per_run(program: Module, example: Example | None) -> int:
    """A rough prompt-token count of one run (4 characters a token), from a dry render.

    A program that cannot dry-run is estimated from its predictors' templates plus the
    example's input text, never reported as free.
    """
    if example is None:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calls_per_run, run on the same example, has warned
        calls = _dry_run(program, example)
    if calls is not None:
        return sum(len(m.content) for c in calls for m in c.messages) // 4
    inputs = sum(len(str(v)) for v in example.inputs().values())
    return sum(sum(len(m.content) for m in p.template()) + inputs for p in program.predictors()) // 4
