"""The frame shared by the optimizers that search over candidates scored on a valset.

It holds what every searching optimizer does the same way: its options (:class:`SearchOptions`,
declared once), the trainset/valset split (with the leakage warning), the
:class:`~oobleck.optimize._scoring.Scorer`, the choice of the winner (best mean, or the
shortest prompt within a tolerance), and the verdict against the starting program.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import FrameType
from typing import TYPE_CHECKING, Any, TypedDict

from oobleck._estimate import tokens_per_run
from oobleck._hashing import canonical_json, rows_sha256
from oobleck.errors import BudgetExceededError, ConfigError
from oobleck.example import Example, to_data
from oobleck.metrics import metric_name
from oobleck.module import Module
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.optimize._identity import candidate_key
from oobleck.optimize._scoring import Scorer, select, verdict

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SearchKwargs", "SearchOptimizer", "SearchOptions"]

log = logging.getLogger("oobleck.optimize")


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside oobleck.

    Counted from the function that calls ``warnings.warn`` (level 1), however deep the frame
    of optimizers above it is.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame: FrameType | None = sys._getframe(2)  # the caller of the function that warns
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level


class SearchKwargs(TypedDict, total=False):
    """The search options as keyword arguments (for type checkers; see :class:`SearchOptions`)."""

    num_threads: int
    max_errors: int | None
    racing: bool
    require_significant: bool
    prompt_tolerance: float | None
    val_fraction: float
    max_lm_calls: int | None
    max_tokens: int | None


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """The options every searching optimizer takes, declared once here.

    Each searching optimizer accepts them as keyword arguments after its own and keeps them
    as ``optimizer.options``.

    Attributes:
        num_threads: threads for scoring candidates.
        max_errors: failed rows tolerated per candidate evaluation (None: any number).
        racing: stop scoring a candidate once it is confidently worse than the incumbent
            (paired, on the same rows); the calls saved are reported in provenance.
        require_significant: return the starting program unless the winner's paired gain over
            it is significant (95% interval above zero).
        prompt_tolerance: when set (points), choose the shortest prompt among the candidates
            scoring within this much of the best.
        val_fraction: without a valset, the share of the trainset held out for scoring.
        max_lm_calls: stop cleanly at this many LM calls, proposer calls included (see
            :class:`~oobleck.optimize.Optimizer`).
        max_tokens: stop cleanly at this many tokens.

    Raises:
        ConfigError: ``val_fraction`` outside (0, 1), or a negative ``prompt_tolerance``.
    """

    num_threads: int = 1
    max_errors: int | None = 10
    racing: bool = True
    require_significant: bool = False
    prompt_tolerance: float | None = None
    val_fraction: float = 0.5
    max_lm_calls: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.prompt_tolerance is not None and self.prompt_tolerance < 0:
            raise ConfigError(f"prompt_tolerance must be >= 0 points, got {self.prompt_tolerance}")

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names."""
        return frozenset(f.name for f in fields(cls))


class SearchOptimizer(Optimizer):
    """Base of the optimizers that score candidates on a valset (see the module docstring).

    Args:
        metric: ``fn(example, prediction, trace=None)`` returning a number, a bool, or a score
            with feedback (only the score is used here; see :func:`oobleck.metrics.outcome`).
        **options: the search options (:class:`SearchOptions`).

    Raises:
        TypeError: an option that is not a search option.
        ConfigError: an option out of range.
    """

    needs_metric = True

    def __init__(self, metric: Callable[..., Any], **options: Unpack[SearchKwargs]) -> None:
        unknown = sorted(set(options) - SearchOptions.names())
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no option(s) {unknown}; its search options are "
                f"{sorted(SearchOptions.names())}"
            )
        self.options = SearchOptions(**options)
        super().__init__(max_lm_calls=self.options.max_lm_calls, max_tokens=self.options.max_tokens)
        self.metric = metric

    def _search_settings(self) -> dict[str, Any]:
        o = self.options
        return {
            "metric": metric_name(self.metric),
            "num_threads": o.num_threads,
            "racing": o.racing,
            "require_significant": o.require_significant,
            "prompt_tolerance": o.prompt_tolerance,
            "val_fraction": o.val_fraction,
        }

    # ---- data ----

    def _val_size(self, trainset: list[Example], valset: list[Example] | None) -> tuple[int, int]:
        """(rows to learn from, rows to score on), as :meth:`_split` will make them."""
        if valset is None and len(trainset) >= 2:
            n_val = min(max(1, round(len(trainset) * self.options.val_fraction)), len(trainset) - 1)
            return len(trainset) - n_val, n_val
        return len(trainset), len(valset or trainset)

    def _split(
        self, trainset: list[Example], valset: list[Example] | None, seed: int, *, quiet: bool = False
    ) -> tuple[list[Example], list[Example], dict[str, Any]]:
        if valset is not None:
            if valset is trainset or rows_sha256(valset) == rows_sha256(trainset):
                log.info("%s: scoring on the trainset, as asked (valset=trainset)", self.name)
                return trainset, valset, {"valset": "trainset (explicit)"}
            train_keys = {canonical_json(to_data(r)) for r in trainset}
            overlap = sum(1 for r in valset if canonical_json(to_data(r)) in train_keys)
            if overlap and not quiet:
                warnings.warn(
                    f"{self.name}: {overlap} of {len(valset)} valset rows also appear in the trainset; "
                    "their scores will be inflated by demos of the same rows",
                    stacklevel=_user_stacklevel(),
                )
            return trainset, valset, {"valset": "given", "overlap_with_trainset": overlap}
        if len(trainset) < 2:
            raise ConfigError(f"{self.name} needs a valset, or a trainset of at least 2 rows to split")
        indices = list(range(len(trainset)))
        random.Random(f"oobleck-split:{seed}").shuffle(indices)
        n_val = self._val_size(trainset, None)[1]
        val_idx, train_idx = sorted(indices[:n_val]), sorted(indices[n_val:])
        if not quiet:
            warnings.warn(
                f"{self.name}: no valset given; scoring candidates on {n_val} of the {len(trainset)} trainset rows "
                f"(a seeded split, seed={seed}) and bootstrapping from the other {len(train_idx)}. "
                "Pass valset= to choose the rows yourself.",
                stacklevel=_user_stacklevel(),
            )
        train = [trainset[i] for i in train_idx]
        val = [trainset[i] for i in val_idx]
        return train, val, {"valset": "split from trainset", "valset_rows": val_idx}

    def _scorer(self, val: list[Example], run: CompileRun) -> Scorer:
        return Scorer(
            val,
            self.metric,
            num_threads=self.options.num_threads,
            max_errors=self.options.max_errors,
            racing=self.options.racing,
            state=run.state.get("scorer"),
        )

    # ---- the end of a search ----

    def _finish(
        self,
        run: CompileRun,
        scorer: Scorer,
        program: Module,
        candidates: Mapping[str, Module],
        *,
        stopped: bool,
    ) -> Module:
        """Choose the winner among the fully scored ``candidates`` and state the verdict.

        ``candidates`` maps scorer keys to programs, the starting program included. Records
        ``best``, ``verdict`` and ``racing`` in ``run.scores``; returns the starting program
        (a copy) when nothing was fully scored, or when ``require_significant`` and the gain
        is not significant.
        """
        start_key = candidate_key(program)
        full = {k: scorer.candidates[k].mean() for k in candidates if scorer.complete(k) and not scorer.candidates[k].dropped}
        run.scores["racing"] = scorer.racing_report()
        if stopped:
            run.budget.stopped = True
        if not full:
            log.warning("%s: no candidate was fully scored before the budget ran out; returning the program unchanged", self.name)
            run.scores["best"] = None
            return program.copy()
        first = scorer.valset[0]
        lengths = {k: tokens_per_run(candidates[k], first) for k in full}
        best_key = select(full, lengths, tolerance=self.options.prompt_tolerance)
        run.scores["best"] = best_key
        run.scores["best_score"] = full[best_key]
        run.scores["best_prompt_tokens"] = lengths[best_key]
        if scorer.complete(start_key):
            v = verdict(scorer.row_scores(start_key), scorer.row_scores(best_key))
            run.scores["start_score"] = scorer.candidates[start_key].mean()
            run.scores["verdict"] = v.to_dict()
            log.info("%s: gain over the starting program %s", self.name, v)
            if self.options.require_significant and not v.significant:
                log.warning("%s: the gain %s is not significant; returning the starting program", self.name, v)
                run.scores["returned"] = "start (gain not significant)"
                return program.copy()
        else:
            run.scores["verdict"] = None
        return candidates[best_key].copy()

    def _score_start(self, scorer: Scorer, program: Module) -> bool:
        """Score the starting program in full (never raced); False when the budget ran out."""
        try:
            scorer.score(candidate_key(program), program, race=False)
        except BudgetExceededError:
            return False
        return True
