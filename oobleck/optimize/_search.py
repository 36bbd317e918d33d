"""The frame shared by the optimizers that search over candidates scored on a valset.

It holds what every searching optimizer does the same way: its options (:class:`SearchOptions`,
declared once), the split of the data (with the leakage warning), the
:class:`~oobleck.optimize._scoring.Scorer`, the choice of the winner (best mean, or the
shortest prompt within a tolerance), and the verdict against the starting program.

The split, in three: rows to learn from (demos, reflection), rows that select (every candidate
is scored on them) and rows that confirm. With a valset, the valset is the scoring rows and
the trainset the rows to learn from; without one, ``val_fraction`` of the trainset becomes the
scoring rows (seeded). Then ``confirm_fraction`` of the scoring rows (at least
:data:`MIN_CONFIRM_ROWS`) is held out, seeded and stratified by label when the labels are
categorical, and no candidate is ever scored on them. The winner is chosen on the selection
rows; its paired gain over the starting program is then measured on the confirming rows, and
that is the verdict (``scores.verdict``; ``scores.selection_verdict`` is the same comparison on
the selection rows, optimistic by construction). When the scoring rows are too few to keep
:data:`MIN_CONFIRM_ROWS` on each side, nothing is held out and the verdict says so instead of
giving an interval. ``require_significant=True`` returns the starting program unless the
confirmed gain is significant. Under ``max_lm_calls``, the calls confirmation needs are kept
back from the search.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import FrameType
from typing import TYPE_CHECKING, Any, TypedDict

from oobleck._estimate import CostEstimate, Expected, calls_per_run, start_demos, tokens_per_run
from oobleck._hashing import canonical_json, rows_sha256
from oobleck.errors import BudgetExceededError, ConfigError, TooManyErrorsError
from oobleck.example import Example, to_data
from oobleck.metrics import metric_name
from oobleck.module import Module
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.optimize._identity import candidate_key
from oobleck.optimize._scoring import Scorer, select, verdict

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from oobleck._budget import Budget

__all__ = [
    "MIN_CONFIRM_ROWS",
    "SearchKwargs",
    "SearchOptimizer",
    "SearchOptions",
    "Split",
    "confirm_count",
    "holdout",
    "verdict_lines",
]

#: The fewest confirming rows a verdict is measured on (and the fewest selection rows kept
#: beside them): below ten paired rows a t interval on 0/1 scores is too wide to decide
#: anything, and its normal approximation is not to be trusted.
MIN_CONFIRM_ROWS = 10

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


def confirm_count(n: int, fraction: float) -> tuple[int, str | None]:
    """How many of ``n`` scoring rows confirm, and why none do when none do.

    ``round(n * fraction)``, raised to :data:`MIN_CONFIRM_ROWS`; none when that would leave
    fewer than :data:`MIN_CONFIRM_ROWS` rows to select on (the reason says so).

    Example:
        >>> confirm_count(60, 0.3), confirm_count(24, 0.3)[0], confirm_count(12, 0.3)[0]
        ((18, None), 10, 0)
    """
    if fraction <= 0:
        return 0, "confirmation is switched off (confirm_fraction=0)"
    want = max(round(n * fraction), MIN_CONFIRM_ROWS)
    if n - want < MIN_CONFIRM_ROWS:
        return 0, (
            f"too few rows to confirm: {n} scoring rows cannot hold out {MIN_CONFIRM_ROWS} confirming rows and "
            f"keep {MIN_CONFIRM_ROWS} to select on; give at least {2 * MIN_CONFIRM_ROWS} validation rows "
            "for a confirmed verdict"
        )
    return want, None


def _label_key(row: Example) -> str:
    return json.dumps(row.labels(), sort_keys=True, default=str)


def holdout(rows: Sequence[Example], n_confirm: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the selection rows and of ``n_confirm`` confirming rows (both sorted).

    Seeded. When the labels look categorical (fewer distinct label sets than a third of the
    rows), each label keeps its share on both sides (largest remainders, ties by label).
    """
    n = len(rows)
    rng = random.Random(f"oobleck-confirm:{seed}")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(_label_key(row), []).append(i)
    if len(groups) * 3 > n:
        groups = {"": list(range(n))}
    quota = {k: n_confirm * len(v) // n for k, v in groups.items()}
    rest = n_confirm - sum(quota.values())
    by_remainder = sorted(groups, key=lambda k: (-(n_confirm * len(groups[k]) % n), k))
    for k in by_remainder[:rest]:
        quota[k] += 1
    confirm: list[int] = []
    for k in sorted(groups):
        members = list(groups[k])
        rng.shuffle(members)
        confirm.extend(members[: quota[k]])
    chosen = set(confirm)
    return [i for i in range(n) if i not in chosen], sorted(chosen)


@dataclass(frozen=True, slots=True)
class Split:
    """The data of one search, in three (see the module docstring).

    Attributes:
        train: the rows to learn from (demos, reflection).
        select: the rows every candidate is scored on.
        confirm: the rows only the winner and the starting program are scored on, at the end.
        info: what provenance records of the split (``notes.split``).
        no_confirm: why nothing was held out to confirm on (None when ``confirm`` has rows).
    """

    train: list[Example]
    select: list[Example]
    confirm: list[Example]
    info: dict[str, Any] = field(default_factory=dict)
    no_confirm: str | None = None


def verdict_lines(scores: Mapping[str, Any]) -> list[str]:
    """The verdicts of a compile's ``provenance["scores"]`` as lines for a person to read.

    Example:
        >>> verdict_lines({"selection_verdict": {"gain": 20.0, "low": 5.0, "high": 35.0, "n": 24,
        ...     "confidence": 0.95, "significant": True},
        ...     "verdict": {"confirmed": False, "reason": "too few rows to confirm"}})[1]
        'verdict on the confirming rows: not confirmed (too few rows to confirm)'
    """
    out: list[str] = []

    def interval(v: Mapping[str, Any]) -> str:
        pct = round(float(v.get("confidence", 0.95)) * 100)
        sig = "significant" if v["significant"] else "not significant"
        return f"{v['gain']:+.1f} points ({pct}% interval {v['low']:+.1f} to {v['high']:+.1f}, {v['n']} paired rows; {sig})"

    sel = scores.get("selection_verdict")
    if sel:
        out.append(f"gain on the selection rows (they chose the winner, so it is optimistic): {interval(sel)}")
    v = scores.get("verdict")
    if isinstance(v, Mapping):
        if v.get("confirmed"):
            out.append(f"verdict on the confirming rows (never seen by the search): {interval(v)}")
        else:
            out.append(f"verdict on the confirming rows: not confirmed ({v.get('reason', 'no reason recorded')})")
    returned = scores.get("returned")
    if returned:
        out.append(f"returned: {returned}")
    return out


class SearchKwargs(TypedDict, total=False):
    """The search options as keyword arguments (for type checkers; see :class:`SearchOptions`)."""

    num_threads: int
    max_errors: int | None
    racing: bool
    require_significant: bool
    prompt_tolerance: float | None
    val_fraction: float
    confirm_fraction: float
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
            it on the confirming rows is significant (95% interval above zero); with no
            confirming rows (too few, or ``confirm_fraction=0``) the starting program is returned.
        prompt_tolerance: when set (points), choose the shortest prompt among the candidates
            scoring within this much of the best.
        val_fraction: without a valset, the share of the trainset held out for scoring.
        confirm_fraction: the share of the scoring rows held out to confirm the winner on (at
            least :data:`MIN_CONFIRM_ROWS`; none when fewer than twice that many rows score);
            0 holds none out.
        max_lm_calls: stop cleanly at this many LM calls, proposer calls included (see
            :class:`~oobleck.optimize.Optimizer`).
        max_tokens: stop cleanly at this many tokens.

    Raises:
        ConfigError: ``num_threads`` below 1, a negative ``max_errors``, ``val_fraction``
            outside (0, 1), ``confirm_fraction`` outside [0, 1), or a negative or non-finite
            ``prompt_tolerance``.
    """

    num_threads: int = 1
    max_errors: int | None = 10
    racing: bool = True
    require_significant: bool = False
    prompt_tolerance: float | None = None
    val_fraction: float = 0.5
    confirm_fraction: float = 0.3
    max_lm_calls: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int) or self.num_threads < 1:
            raise ConfigError(f"num_threads must be an integer >= 1, got {self.num_threads!r}")
        if self.max_errors is not None and (
            isinstance(self.max_errors, bool) or not isinstance(self.max_errors, int) or self.max_errors < 0
        ):
            raise ConfigError(f"max_errors must be an integer >= 0 or None, got {self.max_errors!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if not 0.0 <= self.confirm_fraction < 1.0:
            raise ConfigError(f"confirm_fraction must be >= 0 and < 1, got {self.confirm_fraction}")
        if self.prompt_tolerance is not None and not 0 <= self.prompt_tolerance < math.inf:
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
            "confirm_fraction": o.confirm_fraction,
        }

    def _with_options(self, **changes: Any) -> SearchOptimizer:
        """A copy of this optimizer with some search options changed (budgets kept in step)."""
        other = copy.copy(self)
        other.options = dataclasses.replace(self.options, **changes)
        other.max_lm_calls = other.options.max_lm_calls
        other.max_tokens = other.options.max_tokens
        return other

    # ---- data ----

    def _sizes(self, trainset: list[Example], valset: list[Example] | None) -> tuple[int, int, int]:
        """(rows to learn from, selection rows, confirming rows), as :meth:`_split` will make them."""
        if valset is None and len(trainset) >= 2:
            n_val = min(max(1, round(len(trainset) * self.options.val_fraction)), len(trainset) - 1)
            n_train = len(trainset) - n_val
        else:
            n_train, n_val = len(trainset), len(valset or trainset)
        n_confirm = confirm_count(n_val, self.options.confirm_fraction)[0]
        return n_train, n_val - n_confirm, n_confirm

    def _val_size(self, trainset: list[Example], valset: list[Example] | None) -> tuple[int, int]:
        """(rows to learn from, rows every candidate is scored on), as :meth:`_split` will make them."""
        n_train, n_select, _ = self._sizes(trainset, valset)
        return n_train, n_select

    def _plus_confirmation(
        self,
        estimate: CostEstimate,
        program: Module,
        trainset: list[Example],
        valset: list[Example] | None,
        *,
        expected: Expected | None = None,
        best_demos: float = 0.0,
    ) -> CostEstimate:
        """``estimate`` plus the runs confirmation takes (the winner and the start on the confirming rows).

        With ``expected``, those runs are added to it (the winner carrying ``best_demos`` demos)
        and its expectations replace the estimate's.
        """
        n_confirm = self._sizes(trainset, valset)[2]
        if expected is not None and n_confirm:
            expected.runs(n_confirm, start_demos(program))
            expected.runs(n_confirm, best_demos)
        if not n_confirm:
            return estimate if expected is None else expected.into(estimate)
        first = trainset[0] if trainset else None
        runs = 2 * n_confirm
        per_run = calls_per_run(program, first)
        out = CostEstimate(
            program_runs=estimate.program_runs + runs,
            lm_calls=estimate.lm_calls + runs * per_run,
            min_lm_calls=estimate.min_lm_calls,
            prompt_tokens=estimate.prompt_tokens + runs * tokens_per_run(program, first),
            breakdown={**estimate.breakdown, "confirmation": runs},
            expected_lm_calls=estimate.expected_lm_calls,
            completion_tokens=estimate.completion_tokens,
        )
        return out if expected is None else expected.into(out)

    def _split(self, trainset: list[Example], valset: list[Example] | None, seed: int, *, quiet: bool = False) -> Split:
        """The rows to learn from, to select on and to confirm on (see the module docstring)."""
        train, val, info = self._split_scoring(trainset, valset, seed, quiet=quiet)
        n_confirm, reason = confirm_count(len(val), self.options.confirm_fraction)
        if not n_confirm:
            info = {**info, "confirm_rows": 0, "no_confirm": reason}
            return Split(train, val, [], info, reason)
        select_idx, confirm_idx = holdout(val, n_confirm, seed)
        info = {
            **info,
            "selection_rows": len(select_idx),
            "confirm_rows": len(confirm_idx),
            "confirm_row_indices": confirm_idx,
        }
        return Split(train, [val[i] for i in select_idx], [val[i] for i in confirm_idx], info, None)

    def _split_scoring(
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
        n_val = len(trainset) - self._sizes(trainset, None)[0]
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
            seed=run.seed,
            state=run.state.get("scorer"),
        )

    @contextlib.contextmanager
    def _reserve(self, run: CompileRun, program: Module, split: Split) -> Iterator[None]:
        """Inside the block, keep back from ``run.budget`` what confirming the winner will cost."""
        budget: Budget = run.budget
        n = len(split.confirm)
        limits = (budget.max_lm_calls, budget.max_tokens)
        if n and budget.limited:
            first = split.confirm[0]
            runs = 2 * n
            if budget.max_lm_calls is not None:
                budget.max_lm_calls = max(0, budget.max_lm_calls - runs * calls_per_run(program, first))
            if budget.max_tokens is not None:
                budget.max_tokens = max(0, budget.max_tokens - runs * tokens_per_run(program, first))
        try:
            yield
        finally:
            budget.max_lm_calls, budget.max_tokens = limits

    # ---- the end of a search ----

    def _finish(
        self,
        run: CompileRun,
        scorer: Scorer,
        program: Module,
        candidates: Mapping[str, Module],
        *,
        stopped: bool,
        split: Split,
    ) -> Module:
        """Choose the winner on the selection rows, then state the verdict on the confirming rows.

        ``candidates`` maps scorer keys to programs, the starting program included. Records
        ``best``, ``selection_verdict``, ``verdict`` and ``racing`` in ``run.scores``; returns the
        starting program (a copy) when nothing was fully scored, or when
        ``require_significant`` and the confirmed gain is not significant.
        """
        start_key = candidate_key(program)
        full = {
            k: scorer.candidates[k].mean()
            for k in candidates
            if scorer.complete(k) and not scorer.candidates[k].dropped
        }
        run.scores["racing"] = scorer.racing_report()
        if stopped:
            run.budget.stopped = True
        if not full:
            log.warning(
                "%s: no candidate was fully scored before the budget ran out; returning the program unchanged",
                self.name,
            )
            run.scores["best"] = None
            run.scores["verdict"] = {"confirmed": False, "reason": "no candidate was fully scored"}
            return program.copy()
        first = scorer.valset[0]
        lengths = {k: tokens_per_run(candidates[k], first) for k in full}
        best_key = select(full, lengths, tolerance=self.options.prompt_tolerance)
        run.scores["best"] = best_key
        run.scores["best_score"] = full[best_key]
        run.scores["best_prompt_tokens"] = lengths[best_key]
        run.scores["trajectory"] = [
            {
                "lm_calls": t["lm_calls"],
                "score": t["score"],
                "dropped": t["dropped"],
                "start": t["candidate"] == start_key,
                "chosen": t["candidate"] == best_key,
            }
            for t in scorer.trajectory()
        ]
        if scorer.complete(start_key):
            sv = verdict(scorer.row_scores(start_key), scorer.row_scores(best_key))
            run.scores["start_score"] = scorer.candidates[start_key].mean()
            run.scores["selection_verdict"] = sv.to_dict()
        else:
            run.scores["selection_verdict"] = None
        run.scores["verdict"] = self._confirm(program, candidates[best_key], split, same=best_key == start_key, run=run)
        return self._decide(run, program, candidates[best_key])

    def _decide(self, run: CompileRun, program: Module, best: Module) -> Module:
        """Log both verdicts; the winner, or the start when ``require_significant`` refuses it."""
        for line in verdict_lines(run.scores):
            log.info("%s: %s", self.name, line)
        v = run.scores.get("verdict") or {}
        if self.options.require_significant and not (v.get("confirmed") and v.get("significant")):
            why = (
                "not significant on the confirming rows" if v.get("confirmed") else f"not confirmed: {v.get('reason')}"
            )
            log.warning("%s: require_significant: the gain is %s; returning the starting program", self.name, why)
            run.scores["returned"] = f"start (gain {why})"
            return program.copy()
        return best.copy()

    def _confirm(
        self, program: Module, best: Module, split: Split, *, same: bool, run: CompileRun | None = None
    ) -> dict[str, Any]:
        """The paired gain of ``best`` over ``program`` on the confirming rows (JSON data).

        ``{"confirmed": True, "gain", "low", "high", "n", "confidence", "significant",
        "start_score", "best_score"}``, or ``{"confirmed": False, "reason": ...}`` when there are
        no confirming rows, the start itself won, or the budget or errors stopped the scoring.
        With ``run``, the confirming rows are checkpointed as they are scored (state key
        ``"confirm"``), so a resumed compile does not pay for them again.
        """
        if split.no_confirm is not None or not split.confirm:
            return {"confirmed": False, "reason": split.no_confirm or "no confirming rows"}
        if same:
            return {"confirmed": False, "reason": "the starting program won the selection; there is no gain to confirm"}
        best_key = candidate_key(best)
        saved = run.state.get("confirm") if run is not None else None
        restored = saved["scores"] if isinstance(saved, dict) and saved.get("best") == best_key else None
        scorer = Scorer(
            split.confirm,
            self.metric,
            num_threads=self.options.num_threads,
            max_errors=self.options.max_errors,
            racing=False,
            state=restored,
        )
        if run is not None:
            scorer.on_chunk = lambda: run.save_part("confirm", {"best": best_key, "scores": scorer.to_data()})
        try:
            scorer.score("start", program, race=False)
            scorer.score("best", best, race=False)
        except BudgetExceededError:
            return {
                "confirmed": False,
                "reason": f"the budget ran out while scoring the {len(split.confirm)} confirming rows",
            }
        except TooManyErrorsError as exc:
            return {"confirmed": False, "reason": f"scoring the confirming rows failed: {exc}"}
        v = verdict(scorer.row_scores("start"), scorer.row_scores("best"))
        return {
            "confirmed": True,
            **v.to_dict(),
            "start_score": round(scorer.candidates["start"].mean(), 4),
            "best_score": round(scorer.candidates["best"].mean(), 4),
        }

    def _score_start(self, scorer: Scorer, program: Module) -> bool:
        """Score the starting program in full (never raced); False when the budget ran out."""
        try:
            scorer.score(candidate_key(program), program, race=False)
        except BudgetExceededError:
            return False
        return True
