"""The candidate-scoring loop shared by the searching optimizers: paired racing and the verdict.

Every candidate is scored on the same valset rows in the same order, so two candidates can be
compared row by row (paired), which is far less noisy than comparing two means. A
:class:`Scorer` remembers each candidate's per-row scores (and checkpoints them), so a candidate
first scored on a minibatch pays only for the missing rows when it earns a full evaluation.

Racing is a sequential test, valid however often it looks. While a candidate is scored, rows
come in a seeded random order, and after each chunk its paired differences to the incumbent
(the best fully scored candidate) are tested with a betting confidence sequence for the mean of
bounded values sampled without replacement (Waudby-Smith and Ramdas, "Estimating means of
bounded random variables by betting", JRSS B 2023): a nonnegative supermartingale, the wealth
of a bettor against "the candidate is no worse than the incumbent on the whole valset", that
the candidate is dropped at once its wealth reaches ``1 / alpha``. By Ville's inequality a
candidate that is not worse on the valset is dropped with probability at most ``alpha``, at any
number of looks (``tests/optimize/test_racing.py`` measures it on simulated null candidates).
A candidate is scored on at least ``max(5, 10% of the valset)`` rows before it can be dropped.
The calls saved are the rows skipped times the calls per row that reached a backend (cache
hits are free, so they save nothing).

The verdict: the paired gain of one program over another on the same rows, with a t interval
(:func:`paired_interval`). The searching optimizers state it twice: on the rows that chose the
winner (optimistic: the best of many candidates is ahead there by selection) and on confirming
rows the search never saw (see :mod:`oobleck.optimize._search`).
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oobleck import _budget, _progress, callbacks
from oobleck.errors import ConfigError, TooManyErrorsError
from oobleck.evaluation import evaluate
from oobleck.example import Example
from oobleck.module import Module

__all__ = [
    "CandidateScores",
    "PairedInterval",
    "Scorer",
    "confidently_worse",
    "paired_interval",
    "select",
    "t_quantile",
]

log = logging.getLogger("oobleck.optimize")


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom.

    Exact for 1 and 2 degrees of freedom; Hill's (1970) expansion around the normal quantile
    otherwise (off by under 0.005 at 3 degrees of freedom and under 3e-4 from 5 on: plenty for an interval).
    """
    if not 0.0 < p < 1.0:
        raise ConfigError(f"a quantile needs 0 < p < 1, got {p}")
    if df < 1:
        raise ConfigError(f"t needs at least 1 degree of freedom, got {df}")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = statistics.NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True, slots=True)
class PairedInterval:
    """The mean paired difference ``a - b`` (in percentage points) with its interval.

    Attributes:
        gain: the mean of ``a_i - b_i`` times 100 (scores in 0..1 become points).
        low: the lower end of the interval.
        high: the upper end.
        n: the number of pairs.
        confidence: the interval's confidence level.
    """

    gain: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero on the positive side (``a`` is better)."""
        return self.low > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON data (rounded to 4 decimals so provenance stays readable and stable)."""
        return {
            "gain": round(self.gain, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "n": self.n,
            "confidence": self.confidence,
            "significant": self.significant,
        }

    def __str__(self) -> str:
        pct = round(self.confidence * 100)
        return f"{self.gain:+.1f} points ({pct}% interval {self.low:+.1f} to {self.high:+.1f}, {self.n} paired rows)"


def paired_interval(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> PairedInterval:
    """The mean of ``a_i - b_i`` in points (scores times 100) with a two-sided t interval.

    Args:
        a: one candidate's per-row scores (0..1).
        b: the other's, on the same rows in the same order.
        confidence: the interval's level.

    Raises:
        ConfigError: the lists differ in length or are empty.

    Example:
        >>> str(paired_interval([1, 1, 1, 0], [0, 1, 0, 0]))
        '+50.0 points (95% interval -41.8 to +100.0, 4 paired rows)'
    """
    if len(a) != len(b):
        raise ConfigError(f"paired scores need the same rows: {len(a)} vs {len(b)}")
    if not a:
        raise ConfigError("paired scores need at least one row")
    diffs = [100.0 * (float(x) - float(y)) for x, y in zip(a, b)]
    n = len(diffs)
    mean = sum(diffs) / n
    # Scores in 0..1 cannot differ by more than 100 points: the interval is cut there.
    bound = 100.0 if all(0.0 <= float(v) <= 1.0 for v in (*a, *b)) else math.inf
    if n < 2:
        return PairedInterval(mean, -bound, bound, n, confidence)
    sd = statistics.stdev(diffs)
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return PairedInterval(mean, max(mean - half, -bound), min(mean + half, bound), n, confidence)


def confidently_worse(diffs: Sequence[float], *, population: int, alpha: float = 0.05, cap: float = 0.5) -> bool:
    """Whether paired differences show, at level ``alpha``, that a candidate is worse on the valset.

    ``diffs`` are ``candidate_i - incumbent_i`` (each in [-1, 1]) on the first rows of a uniformly
    random order of the ``population`` valset rows. The null hypothesis is "the mean difference
    over all ``population`` rows is >= 0" (the candidate is not worse). A bettor starts with
    wealth 1 and before each row stakes ``lam`` (chosen from the rows before it only) on the
    difference falling below ``m``, the mean the unseen rows must have for the whole valset to
    average exactly 0; the wealth ``prod(1 - lam * (d - m))`` is then a nonnegative
    supermartingale under the null (sampling without replacement), and by Ville's inequality it
    ever reaches ``1 / alpha`` with probability at most ``alpha``, however many rows are looked
    at and however often. The stake follows the approximate Kelly bet ``(m - mean) / (var +
    (m - mean)**2)`` from a running mean and variance, capped at ``cap / (1 - m)`` so no row can
    take more than ``cap`` of the wealth.

    Args:
        diffs: the paired differences, in scoring order.
        population: the valset size the rows are drawn from (>= ``len(diffs)``).
        alpha: the error rate: a candidate that is not worse is dropped with at most this probability.
        cap: the largest share of the wealth one row may stake (0 < cap < 1).

    Returns:
        True when the wealth reached ``1 / alpha`` at some row: drop the candidate.

    Example:
        >>> confidently_worse([-1.0] * 8, population=24)
        True
        >>> confidently_worse([-1.0, 0.0, 1.0, 0.0] * 4, population=24)
        False
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < cap < 1.0:
        raise ConfigError(f"alpha and cap must be between 0 and 1, got {alpha} and {cap}")
    if population < len(diffs):
        raise ConfigError(f"{len(diffs)} differences cannot come from a population of {population} rows")
    wealth, target = 1.0, 1.0 / alpha
    total = 0.0  # sum of the differences seen
    mean, var = 0.0, 0.25  # running estimates (one pseudo-row at 0 with variance 1/4)
    for t, d in enumerate(diffs):
        m = -total / (population - t)  # the null mean of the rows not yet seen
        if m <= -1.0:
            return False  # the rows seen already guarantee a mean >= 0 on the valset
        if m >= 1.0:
            return d < 1.0  # the null needs every unseen row at +1
        edge = m - mean
        lam = min(edge / (var + edge * edge), cap / (1.0 - m)) if edge > 0 else 0.0
        wealth *= 1.0 - lam * (d - m)
        if wealth >= target:
            return True
        total += d
        mean_next = total / (t + 2)
        var = (var * (t + 1) + (d - mean) * (d - mean_next)) / (t + 2)
        mean = mean_next
    return False


@dataclass(slots=True)
class CandidateScores:
    """What scoring one candidate found so far.

    Attributes:
        scores: per valset row index, the row's score (0..1; a failed row scores 0).
        errors: how many of those rows failed.
        calls: LM calls its rows sent to a backend (every attempt).
        cache_hits: LM calls its rows found in a cache.
        dropped: racing stopped it as confidently worse than the incumbent.
        at_calls: the compile's LM calls (cache hits included) when its scoring ended: fully
            scored or dropped (None while in progress, or with no budget active). The report's
            score-versus-calls plot reads it.
    """

    scores: dict[int, float] = field(default_factory=dict)
    errors: int = 0
    calls: int = 0
    cache_hits: int = 0
    dropped: bool = False
    at_calls: int | None = None

    def mean(self, rows: Sequence[int] | None = None) -> float:
        """The mean score in percent over ``rows`` (default: every row scored)."""
        keys = list(self.scores) if rows is None else list(rows)
        return 100.0 * sum(self.scores[i] for i in keys) / len(keys) if keys else 0.0

    def to_data(self) -> dict[str, Any]:
        """JSON data for a checkpoint (row indices as sorted string keys)."""
        return {
            "scores": {str(k): self.scores[k] for k in sorted(self.scores)},
            "errors": self.errors,
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "dropped": self.dropped,
            "at_calls": self.at_calls,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CandidateScores:
        """Rebuild from :meth:`to_data`."""
        return cls(
            scores={int(k): float(v) for k, v in data.get("scores", {}).items()},
            errors=int(data.get("errors", 0)),
            calls=int(data.get("calls", 0)),
            cache_hits=int(data.get("cache_hits", 0)),
            dropped=bool(data.get("dropped", False)),
            at_calls=None if data.get("at_calls") is None else int(data["at_calls"]),
        )


class Scorer:
    """Scores candidate programs on one valset, row by row, with paired racing.

    Args:
        valset: the rows every candidate is scored on.
        metric: ``fn(example, prediction, trace=None)`` (a score with feedback is accepted; only
            the score counts here).
        num_threads: threads per chunk of rows.
        max_errors: failed rows tolerated per candidate (None: any number).
        racing: drop a candidate once it is confidently worse than the incumbent (see the
            module docstring); rows are then scored in a seeded random order.
        race_confidence: ``1 - alpha`` of racing's test: a candidate that is not worse than the
            incumbent on the valset is dropped with probability at most ``alpha``.
        min_race_rows: rows a candidate is always scored on before racing may drop it
            (default: ``max(5, 10%)`` of the valset).
        chunk: rows scored between two looks of racing (default: ``max(num_threads,
            valset / 12)``; the test is valid whatever the number of looks).
        seed: the seed of racing's row order.
        state: per-candidate scores from a checkpoint (:meth:`to_data`).
    """

    def __init__(
        self,
        valset: Sequence[Example],
        metric: Callable[..., Any],
        *,
        num_threads: int = 1,
        max_errors: int | None = 10,
        racing: bool = True,
        race_confidence: float = 0.95,
        min_race_rows: int | None = None,
        chunk: int | None = None,
        seed: int = 0,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        if not 0.0 < race_confidence < 1.0:
            raise ConfigError(f"race_confidence must be between 0 and 1, got {race_confidence}")
        self.valset = list(valset)
        n = len(self.valset)
        min_race_rows = max(5, math.ceil(0.1 * n)) if min_race_rows is None else min_race_rows
        chunk = max(num_threads, math.ceil(n / 12), 1) if chunk is None else chunk
        if chunk < 1 or min_race_rows < 2:
            raise ConfigError(f"chunk must be >= 1 and min_race_rows >= 2, got {chunk} and {min_race_rows}")
        self.metric = metric
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.racing = racing
        self.race_confidence = race_confidence
        self.min_race_rows = min_race_rows
        self.chunk = chunk
        # Racing's test needs the rows in random order (a valset sorted by label would fool it);
        # without racing the order changes nothing, and the valset's own is kept.
        self.order = list(range(n))
        if racing:
            random.Random(f"oobleck-race-order:{seed}").shuffle(self.order)
        self._rank = {row: r for r, row in enumerate(self.order)}
        self.candidates: dict[str, CandidateScores] = {
            k: CandidateScores.from_data(v) for k, v in (state or {}).items()
        }
        #: Called after each chunk of rows is recorded (the optimizer checkpoints there, so a
        #: resumed compile never pays again for the finished rows of the candidate in progress).
        self.on_chunk: Callable[[], None] | None = None

    # ---- bookkeeping ----

    def to_data(self) -> dict[str, Any]:
        """Every candidate's scores as JSON data."""
        return {k: v.to_data() for k, v in self.candidates.items()}

    def complete(self, key: str) -> bool:
        """Whether ``key`` has a score on every valset row."""
        c = self.candidates.get(key)
        return c is not None and len(c.scores) == len(self.valset)

    def row_scores(self, key: str) -> list[float]:
        """``key``'s scores in valset order (it must be complete)."""
        c = self.candidates[key]
        return [c.scores[i] for i in range(len(self.valset))]

    def incumbent(self, among: Collection[str] | None = None) -> str | None:
        """The fully scored candidate (of ``among``, default all) with the best mean (first on ties)."""
        best: tuple[float, str] | None = None
        keys = self.candidates if among is None else [k for k in among if k in self.candidates]
        for key in keys:
            c = self.candidates[key]
            if not c.dropped and self.complete(key):
                m = c.mean()
                if best is None or m > best[0]:
                    best = (m, key)
        return None if best is None else best[1]

    def trajectory(self) -> list[dict[str, Any]]:
        """Each candidate whose scoring ended, in the order it ended: key, score, LM calls then.

        JSON data for provenance (``scores.trajectory``): ``{"candidate", "score", "lm_calls",
        "dropped"}``, the score in percent rounded to 4 places (a dropped candidate's is over the
        rows it was scored on).
        """
        ended = [(c.at_calls, k, c) for k, c in self.candidates.items() if c.at_calls is not None]
        return [
            {"candidate": k, "score": round(c.mean(), 4), "lm_calls": n, "dropped": c.dropped}
            for n, k, c in sorted(ended, key=lambda t: t[0])
        ]

    def racing_report(self) -> dict[str, Any]:
        """What racing did: candidates dropped, rows skipped, the calls that saved, its alpha and minimum.

        Calls saved are the skipped rows times each dropped candidate's backend calls per
        scored row; rows answered from a cache cost nothing, so they save nothing.
        """
        n = len(self.valset)
        dropped = [c for c in self.candidates.values() if c.dropped]
        skipped = sum(n - len(c.scores) for c in dropped)
        saved = sum(round((n - len(c.scores)) * c.calls / max(len(c.scores), 1)) for c in dropped)
        return {
            "dropped": len(dropped),
            "rows_skipped": skipped,
            "calls_saved": saved,
            "alpha": round(1.0 - self.race_confidence, 6),
            "min_rows": self.min_race_rows,
        }

    # ---- scoring ----

    def score(
        self,
        key: str,
        program: Module,
        rows: Sequence[int] | None = None,
        *,
        race: bool | None = None,
        among: Collection[str] | None = None,
    ) -> CandidateScores:
        """Score ``program`` (known as ``key``) on ``rows`` (default: the whole valset).

        Rows already scored for ``key`` are not run again. With racing, scoring stops once the
        candidate is confidently worse than the incumbent (the best of ``among``, default every
        candidate) on the rows both have scored.

        Raises:
            BudgetExceededError: the budget ran out (what was scored is kept).
            TooManyErrorsError: more than ``max_errors`` of its rows failed.
        """
        with callbacks.step("candidate", key, program, {"key": key, "rows": rows}) as watched:
            scored = self._score(key, program, rows, race, among)
            watched.done(scored)
        return scored

    def _score(
        self, key: str, program: Module, rows: Sequence[int] | None, race: bool | None, among: Collection[str] | None
    ) -> CandidateScores:
        c = self.candidates.setdefault(key, CandidateScores())
        wanted = list(self.order) if rows is None else list(rows)
        todo = [i for i in wanted if i not in c.scores]
        race = self.racing if race is None else race
        incumbent = self.incumbent(among) if race and rows is None else None
        for start in range(0, len(todo), self.chunk):
            if c.dropped:
                break
            part = todo[start : start + self.chunk]
            allowed = None if self.max_errors is None else self.max_errors - c.errors
            if allowed is not None and allowed < 0:
                raise TooManyErrorsError(f"candidate {key} failed on more than max_errors={self.max_errors} rows", [])
            result = evaluate(
                program,
                [self.valset[i] for i in part],
                self.metric,
                num_threads=self.num_threads,
                progress=False,
                max_errors=allowed,
                return_outputs=False,
            )
            for i, row in zip(part, result.rows):
                c.scores[i] = row.score
                c.calls += row.usage.calls
                c.cache_hits += row.usage.cache_hits
            c.errors += result.errors
            if self.on_chunk is not None:
                self.on_chunk()
            if incumbent is not None and incumbent != key and self._confidently_worse(key, incumbent):
                c.dropped = True
                log.info("racing: candidate %s dropped after %d rows", key, len(c.scores))
        if c.at_calls is None and (c.dropped or self.complete(key)):
            budget = _budget.active()
            c.at_calls = None if budget is None else budget.spent.calls + budget.spent.cache_hits
        shown = _progress.current()
        best = self.incumbent() if shown is not None else None
        if shown is not None and best is not None:
            shown.set_score(self.candidates[best].mean())
        return c

    def _confidently_worse(self, key: str, incumbent: str) -> bool:
        c, inc = self.candidates[key], self.candidates[incumbent]
        if len(c.scores) < self.min_race_rows:
            return False
        rows = sorted(c.scores, key=self._rank.__getitem__)
        pairs = [(c.scores[i], inc.scores[i]) for i in rows]
        if not all(0.0 <= v <= 1.0 for pair in pairs for v in pair):
            return False  # the test needs scores in 0..1; other scales are never raced
        diffs = [a - b for a, b in pairs]
        return confidently_worse(diffs, population=len(self.valset), alpha=1.0 - self.race_confidence)


def select(means: Mapping[str, float], prompt_tokens: Mapping[str, int], *, tolerance: float | None = None) -> str:
    """The key with the best mean; with ``tolerance`` (points), the shortest prompt within it.

    Ties (same mean, or the same prompt length within the tolerance) go to the earliest key.

    Example:
        >>> select({"a": 80.0, "b": 79.0}, {"a": 900, "b": 300}, tolerance=2.0)
        'b'
    """
    if not means:
        raise ConfigError("no scored candidate to select from")
    best_key = max(means, key=lambda k: means[k])  # max keeps the first of equals
    if tolerance is None:
        return best_key
    best = means[best_key]
    near = [k for k in means if means[k] >= best - tolerance]
    return min(near, key=lambda k: prompt_tokens.get(k, 0))


def verdict(start: Sequence[float], best: Sequence[float], *, confidence: float = 0.95) -> PairedInterval:
    """The paired gain of ``best`` over ``start`` (per-row scores on the same valset rows)."""
    return paired_interval(best, start, confidence=confidence)
