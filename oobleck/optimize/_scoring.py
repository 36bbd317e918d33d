"""The candidate-scoring loop shared by the searching optimizers: paired racing and the verdict.

Every candidate is scored on the same valset rows in the same order, so two candidates can be
compared row by row (paired), which is far less noisy than comparing two means. A
:class:`Scorer` remembers each candidate's per-row scores (and checkpoints them), so a candidate
first scored on a minibatch pays only for the missing rows when it earns a full evaluation.

Racing: while a candidate is being scored, after each chunk of rows its paired difference to
the incumbent (the best fully scored candidate) is tested; once the upper end of its interval
is below zero (it is confidently worse) the candidate stops costing calls. A tied candidate is
never dropped. The rows skipped are reported as calls saved.

The verdict: the paired gain of the chosen program over the starting program on the valset,
with a t interval; with ``require_significant=True`` an optimizer returns the starting program
when that interval includes zero.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oobleck import _progress
from oobleck.errors import ConfigError, TooManyErrorsError
from oobleck.evaluation import evaluate
from oobleck.example import Example
from oobleck.module import Module

__all__ = [
    "CandidateScores",
    "PairedInterval",
    "Scorer",
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


@dataclass(slots=True)
class CandidateScores:
    """What scoring one candidate found so far.

    Attributes:
        scores: per valset row index, the row's score (0..1; a failed row scores 0).
        errors: how many of those rows failed.
        calls: LM calls (reaching a backend or the cache) its rows took.
        dropped: racing stopped it as confidently worse than the incumbent.
    """

    scores: dict[int, float] = field(default_factory=dict)
    errors: int = 0
    calls: int = 0
    dropped: bool = False

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
            "dropped": self.dropped,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CandidateScores:
        """Rebuild from :meth:`to_data`."""
        return cls(
            scores={int(k): float(v) for k, v in data.get("scores", {}).items()},
            errors=int(data.get("errors", 0)),
            calls=int(data.get("calls", 0)),
            dropped=bool(data.get("dropped", False)),
        )


class Scorer:
    """Scores candidate programs on one valset, row by row, with paired racing.

    Args:
        valset: the rows every candidate is scored on, in this order.
        metric: ``fn(example, prediction, trace=None)`` (a score with feedback is accepted; only
            the score counts here).
        num_threads: threads per chunk of rows.
        max_errors: failed rows tolerated per candidate (None: any number).
        racing: drop a candidate once it is confidently worse than the incumbent.
        race_confidence: the two-sided level of the interval racing tests.
        min_race_rows: rows a candidate is always scored on before racing may drop it.
        chunk: rows scored between two racing tests.
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
        min_race_rows: int = 20,
        chunk: int = 10,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        if not 0.0 < race_confidence < 1.0:
            raise ConfigError(f"race_confidence must be between 0 and 1, got {race_confidence}")
        if chunk < 1 or min_race_rows < 2:
            raise ConfigError("chunk must be >= 1 and min_race_rows >= 2")
        self.valset = list(valset)
        self.metric = metric
        self.num_threads = num_threads
        self.max_errors = max_errors
        self.racing = racing
        self.race_confidence = race_confidence
        self.min_race_rows = min_race_rows
        self.chunk = chunk
        self.candidates: dict[str, CandidateScores] = {
            k: CandidateScores.from_data(v) for k, v in (state or {}).items()
        }

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

    def racing_report(self) -> dict[str, int]:
        """How many candidates racing dropped, the rows it skipped and the calls that saved.

        Calls saved are estimated from the dropped candidates' own calls per row.
        """
        n = len(self.valset)
        dropped = [c for c in self.candidates.values() if c.dropped]
        skipped = sum(n - len(c.scores) for c in dropped)
        saved = sum(round((n - len(c.scores)) * c.calls / max(len(c.scores), 1)) for c in dropped)
        return {"dropped": len(dropped), "rows_skipped": skipped, "calls_saved": saved}

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
        c = self.candidates.setdefault(key, CandidateScores())
        wanted = list(range(len(self.valset))) if rows is None else list(rows)
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
                c.calls += row.usage.calls + row.usage.cache_hits
            c.errors += result.errors
            if incumbent is not None and incumbent != key and self._confidently_worse(key, incumbent):
                c.dropped = True
                log.info("racing: candidate %s dropped after %d rows", key, len(c.scores))
        shown = _progress.current()
        best = self.incumbent() if shown is not None else None
        if shown is not None and best is not None:
            shown.set_score(self.candidates[best].mean())
        return c

    def _confidently_worse(self, key: str, incumbent: str) -> bool:
        c, inc = self.candidates[key], self.candidates[incumbent]
        common = sorted(c.scores)
        if len(common) < self.min_race_rows:
            return False
        diff = paired_interval([c.scores[i] for i in common], [inc.scores[i] for i in common], confidence=self.race_confidence)
        return diff.high < 0


def select(
    means: Mapping[str, float], prompt_tokens: Mapping[str, int], *, tolerance: float | None = None
) -> str:
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
