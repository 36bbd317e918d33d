"""Running one example: the one place a program runs on a row and its metric is read.

Evaluation, the bootstrapper's teacher runs, the reflective optimizer's feedback runs and the
instruction proposer all run something the same way, here:

- the active budget (:func:`oobleck._budget.active`) is checked before the run (a run starts
  only if the largest run so far still fits); each LM call inside it is reserved in the budget
  before it is sent and settled when it returns (``Predict`` does that through
  :func:`oobleck._budget.sending`), so a run the budget cuts short stops before the call that
  would cross it (:func:`metered`, :func:`charged`);
- the run happens under ``oobleck.trace()``, so its calls are metered and its trace entries
  are kept;
- the errors in :data:`~oobleck.errors.FATAL` propagate; any other error fails the row only
  and is returned in the :class:`RowOutcome` for the caller to count;
- the metric's value is read by :func:`oobleck.metrics.outcome` (a number, a bool, or a score
  with feedback).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from oobleck import _budget, callbacks
from oobleck.errors import FATAL
from oobleck.example import Example, Prediction
from oobleck.lm.types import Usage
from oobleck.metrics import outcome
from oobleck.module import Module
from oobleck.trace import Trace, TraceEntry, trace

__all__ = ["RowOutcome", "charged", "metered", "run_example"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """What running one example and scoring it gave.

    Attributes:
        prediction: what the program returned (None when it raised).
        score: the metric's score (``failure_score`` when the run or the metric raised).
        feedback: the metric's feedback, when it gave any.
        error: the exception that failed the row (never one of ``FATAL``), else None.
        usage: what the run cost.
        entries: the trace entries of the run, in call order.
    """

    prediction: Prediction | None
    score: float
    feedback: str | None = None
    error: Exception | None = None
    usage: Usage = field(default_factory=Usage)
    entries: list[TraceEntry] = field(default_factory=list)

    @property
    def error_text(self) -> str | None:
        """``"ExceptionType: message"`` when the row failed, else None."""
        return None if self.error is None else f"{type(self.error).__name__}: {self.error}"


@contextlib.contextmanager
def metered() -> Iterator[Trace]:
    """Check the active budget, trace the block, then tell the budget what the run cost.

    The calls inside were reserved and settled one by one as they were sent; the run's total
    only sizes the next check (and advances a compile's progress bar).

    Raises:
        BudgetExceededError: the budget does not allow another run (nothing is run), or a call
            inside did not fit (what it had sent is counted).
    """
    budget = _budget.active()
    if budget is not None:
        budget.check()
    with trace() as t:
        try:
            yield t
        finally:
            if budget is not None:
                budget.finished_run(t.usage)


def charged(fn: Callable[[], T]) -> T:
    """``fn()`` run under :func:`metered` (an LM call that is no example run, e.g. a proposal)."""
    with metered():
        return fn()


def run_example(
    program: Module,
    example: Example,
    metric: Callable[..., Any],
    *,
    metric_trace: bool = True,
    failure_score: float = 0.0,
) -> RowOutcome:
    """Run ``program`` on ``example``'s inputs under :func:`metered` and score it with ``metric``.

    Args:
        program: the program (called with the example's inputs).
        example: the row, with inputs marked.
        metric: ``fn(example, prediction, trace)``; its value is read by
            :func:`oobleck.metrics.outcome`.
        metric_trace: pass the run's trace entries as ``trace`` (False passes None, as
            evaluation does).
        failure_score: the score of a row whose run or metric raised.

    Returns:
        The RowOutcome; a row that failed carries its ``error`` and ``failure_score``.

    Raises:
        ConfigError: a setup error every row would share (see :data:`oobleck.errors.FATAL`).
        BudgetExceededError: the budget does not allow this run.
    """
    with callbacks.step("trial", None, program, {"example": example}) as watched:
        result = _run(program, example, metric, metric_trace, failure_score)
        watched.done(result)
    return result


def _run(
    program: Module, example: Example, metric: Callable[..., Any], metric_trace: bool, failure_score: float
) -> RowOutcome:
    prediction: Prediction | None = None
    with metered() as t:
        try:
            out = program(**example.inputs())
            prediction = out if isinstance(out, Prediction) else Prediction(_as_mapping(out))
            score, feedback = outcome(metric(example, prediction, list(t.entries) if metric_trace else None))
        except FATAL:
            raise
        except Exception as exc:  # fails this row only; the caller counts it
            return RowOutcome(prediction, failure_score, None, exc, t.usage, list(t.entries))
    return RowOutcome(prediction, score, feedback, None, t.usage, list(t.entries))


def _as_mapping(out: Any) -> Mapping[str, Any]:
    if isinstance(out, Mapping):
        return out
    raise TypeError(f"the program returned {type(out).__name__}; a program must return a Prediction or a mapping")
