"""Dry-run cost estimates: what a compile will spend, worked out without calling any LM.

A program is rendered on one example with no LM (``Module.render_calls``); the calls and prompt
text of that render, times the program runs an optimizer plans, give a :class:`CostEstimate`.

Two kinds of number come out. The bounds (``lm_calls``, ``min_lm_calls``) are what the plan
allows: no more calls are ever made (parse retries aside). The expectation
(``expected_lm_calls``, ``prompt_tokens``, ``completion_tokens``) is what a compile typically
spends, and what ``benchmarks`` and a test hold within 2x of the spend: it counts the demos each
phase's prompts carry (a teacher shown ``teacher_shots`` rows, candidates padded with labelled
demos: per demo, the tokens of one rendered demo turn), the proposer and reflection calls (their
own instructions plus the rows they show), and the runs a search typically makes rather than
its most (a bootstrap stops once it has its demos; a repeated trial costs nothing). A
:class:`RunShape` holds what one run costs; the optimizers add up their phases with it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from oobleck.example import Example
    from oobleck.module import Module

__all__ = [
    "CostEstimate",
    "Expected",
    "RunShape",
    "bootstrap_runs",
    "calls_per_run",
    "distinct_draws",
    "run_shape",
    "start_demos",
    "tokens_per_run",
]

#: The share of teacher runs that pass the metric and become demos, for the expected number of
#: bootstrap runs (a bootstrap stops as soon as it has its demos).
BOOTSTRAP_PASS_RATE = 0.75
#: The tokens of a proposer's or reflection call's own instructions (beyond the rows it shows).
PROPOSER_OVERHEAD_TOKENS = 150
#: The tokens a chat template wraps each message in (role markers, separators).
MESSAGE_TOKENS = 4


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What a compile is planned to cost, worked out without calling any LM.

    Attributes:
        program_runs: the most program runs the compile may make.
        lm_calls: the most LM calls (program runs times calls per run, plus the calibration
            calls of the prompts a scored program is expected to try; parse retries excluded).
        min_lm_calls: the fewest LM calls it can make if nothing is cached.
        prompt_tokens: the prompt tokens a compile typically spends (4 characters a token; the
            demos each phase's prompts carry and the proposer's calls included).
        breakdown: program runs per phase (e.g. ``{"bootstrap": 40, "validation": 220}``).
        expected_lm_calls: the LM calls a compile typically makes (0: not estimated).
        completion_tokens: the completion tokens it typically spends (one demo's answer a call).
    """

    program_runs: int
    lm_calls: int
    min_lm_calls: int
    prompt_tokens: int
    breakdown: dict[str, int] = field(default_factory=dict)
    expected_lm_calls: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON data."""
        return asdict(self)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v:,}" for k, v in self.breakdown.items())
        expected = f"about {self.expected_lm_calls:,} expected, " if self.expected_lm_calls else ""
        return (
            f"up to {self.lm_calls:,} LM calls ({expected}at least {self.min_lm_calls:,}), "
            f"~{self.prompt_tokens:,} prompt + ~{self.completion_tokens:,} completion tokens expected; "
            f"{self.program_runs:,} program runs at most ({parts})"
        )

    def plus(self, other: CostEstimate, *, phase: str | None = None) -> CostEstimate:
        """This estimate and ``other`` added (``other``'s runs under ``phase`` in the breakdown, or merged)."""
        breakdown = dict(self.breakdown)
        for k, v in ({phase: other.program_runs} if phase else other.breakdown).items():
            breakdown[k] = breakdown.get(k, 0) + v
        return CostEstimate(
            program_runs=self.program_runs + other.program_runs,
            lm_calls=self.lm_calls + other.lm_calls,
            min_lm_calls=self.min_lm_calls + other.min_lm_calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            breakdown=breakdown,
            expected_lm_calls=self.expected_lm_calls + other.expected_lm_calls,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class RunShape:
    """What one program run costs, from dry renders (no LM is called).

    Attributes:
        calls: predictor calls per run.
        base_tokens: prompt tokens of a run whose predictors carry no demos.
        demo_tokens: prompt tokens one more demo on each predictor adds to a run.
        completion_tokens: completion tokens of one call (a rendered demo answer).
        row_tokens: the tokens of one row as a proposer or reflection call shows it.
        calibration_calls: the calls a new prompt costs before its first answer (a scored
            predictor estimates its label prior once per prompt: 3 content-free calls for
            contextual calibration, one per row for batch calibration).
    """

    calls: int
    base_tokens: int
    demo_tokens: int
    completion_tokens: int
    row_tokens: int
    calibration_calls: int = 0

    def tokens(self, demos: int) -> int:
        """Prompt tokens of one run whose predictors each carry ``demos`` demos."""
        return self.base_tokens + max(demos, 0) * self.demo_tokens

    def runs(self, runs: float, demos: float = 0.0, prompts: float = 0.0) -> tuple[float, float, float]:
        """``(calls, prompt tokens, completion tokens)`` of ``runs`` runs with ``demos`` demos each.

        They use ``prompts`` distinct prompts; each new one pays its calibration calls first.
        """
        per_run = self.base_tokens + demos * self.demo_tokens
        calibration = prompts * self.calibration_calls
        return (
            runs * self.calls + calibration,
            (runs + calibration / max(self.calls, 1)) * per_run,
            runs * self.calls * self.completion_tokens,
        )

    def proposer_call(self, rows_shown: int) -> float:
        """Prompt tokens of one proposer or reflection call that shows ``rows_shown`` rows."""
        return PROPOSER_OVERHEAD_TOKENS + self.base_tokens / max(self.calls, 1) + rows_shown * self.row_tokens


def _with_demos(program: Module, rows: Sequence[Example], n: int) -> Module:
    """A copy whose predictors each carry ``n`` labelled demos from ``rows`` (fewer if there are not)."""
    from oobleck.optimize._bootstrap import labelled_for

    copy = program.copy()
    for p in copy.predictors():
        p.demos = list(labelled_for(p, rows)[:n])
    return copy


def run_shape(program: Module, trainset: Sequence[Example]) -> RunShape:
    """The :class:`RunShape` of ``program`` on the first row of ``trainset`` (zeros when empty)."""
    first = trainset[0] if trainset else None
    if first is None:
        return RunShape(
            calls=calls_per_run(program, None), base_tokens=0, demo_tokens=0, completion_tokens=0, row_tokens=0
        )
    calls = calls_per_run(program, first)
    others = list(trainset[1:]) or list(trainset)
    bare = tokens_per_run(_with_demos(program, others, 0), first)
    one = tokens_per_run(_with_demos(program, others, 1), first)
    demo = max(one - bare, 0)
    completion = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rendered = _dry_run(_with_demos(program, others, 1), first)
    if rendered:
        answers = [m.content for c in rendered for m in c.messages if m.role == "assistant"]
        completion = sum(len(a) for a in answers) // max(len(answers), 1) // 4 + 1 if answers else 0
    scored = [p for p in program.predictors() if _scores(p)]
    if scored and len(scored) == len(program.predictors()):
        completion = 0  # labels ranked by likelihood: nothing is generated
    calibration = sum(_calibration_calls(p, len(trainset)) for p in scored)
    return RunShape(
        calls=calls,
        base_tokens=bare,
        demo_tokens=demo,
        completion_tokens=completion,
        row_tokens=max(demo // max(calls, 1), 1),
        calibration_calls=calibration,
    )


def _scores(predictor: Any) -> bool:
    """Whether ``predictor`` ranks its labels by likelihood with the LM in use (False when unknown)."""
    try:
        return bool(predictor.mode_choice()[0] == "score")
    except Exception:  # noqa: BLE001 - no LM in use yet (a CLI dry run): priced as generating
        return False


def _calibration_calls(predictor: Any, n_rows: int) -> int:
    """The calls a scored predictor spends on its label prior for each new prompt."""
    method = predictor.calibration
    if method == "auto":  # contextual when score mode was the default choice and nothing was fitted
        method = "contextual" if predictor.mode == "auto" and predictor.calibration_state is None else None
    if method == "contextual":
        from oobleck.calibration import CONTENT_FREE

        return len(CONTENT_FREE)  # a fitted prior is refitted for each new prompt (demos, instructions)
    if method == "batch":
        return len(predictor.calibration_rows or ()) or n_rows
    return 0


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
        return sum(len(m.content) // 4 + MESSAGE_TOKENS for c in calls for m in c.messages)
    inputs = sum(len(str(v)) for v in example.inputs().values())
    return sum(sum(len(m.content) for m in p.template()) + inputs for p in program.predictors()) // 4


def start_demos(program: Module) -> int:
    """The most demos a predictor of ``program`` carries (what its own runs show)."""
    return max((len(p.demos) for p in program.predictors()), default=0)


def bootstrap_runs(n_rows: int, demos: float, *, rounds: int = 1) -> float:
    """The teacher runs a bootstrap typically makes to collect ``demos`` demos from ``n_rows`` rows.

    It stops once it has them, each run passing with :data:`BOOTSTRAP_PASS_RATE`; never more
    than every row in every round.
    """
    if demos <= 0 or n_rows <= 0:
        return 0.0
    return min(float(n_rows * max(rounds, 1)), math.ceil(demos / BOOTSTRAP_PASS_RATE))


def distinct_draws(options: int, draws: int) -> float:
    """The distinct options ``draws`` uniform draws from ``options`` typically hit (repeats cost nothing)."""
    if options <= 0 or draws <= 0:
        return 0.0
    return options * (1.0 - (1.0 - 1.0 / options) ** draws)


@dataclass(slots=True)
class Expected:
    """Adds up a compile's expected calls and tokens, phase by phase (see :class:`RunShape`)."""

    shape: RunShape
    calls: float = 0.0
    prompt: float = 0.0
    completion: float = 0.0
    calibration: float = 0.0

    def runs(self, runs: float, demos: float = 0.0, prompts: float = 0.0) -> None:
        """``runs`` program runs whose predictors each carry ``demos`` demos, over ``prompts`` new prompts."""
        calls, prompt, completion = self.shape.runs(runs, demos, prompts)
        self.calibration += prompts * self.shape.calibration_calls
        self.calls += calls
        self.prompt += prompt
        self.completion += completion

    def proposer_calls(self, calls: float, rows_shown: int, *, completion: int = 40) -> None:
        """``calls`` proposer (or reflection, or summary) calls, each showing ``rows_shown`` rows."""
        self.calls += calls
        self.prompt += calls * self.shape.proposer_call(rows_shown)
        self.completion += calls * completion

    def into(self, estimate: CostEstimate) -> CostEstimate:
        """``estimate`` with these expectations (rounded) in place of its own.

        The calibration calls of its new prompts are added to the bounds too: the runs the plan
        allows do not count them, and a scored program spends them before its first answer.
        """
        return replace(
            estimate,
            lm_calls=estimate.lm_calls + math.ceil(self.calibration),
            min_lm_calls=estimate.min_lm_calls + (self.shape.calibration_calls if self.calibration else 0),
            expected_lm_calls=round(self.calls),
            prompt_tokens=round(self.prompt),
            completion_tokens=round(self.completion),
        )
