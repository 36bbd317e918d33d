"""Racing is a sequential test: a candidate that is not worse is dropped at most alpha of the time.

Simulated paired scores (numpy only, no LM): for each of many seeds a valset of paired 0/1
scores on which the candidate is not worse than the incumbent (mean difference >= 0), a random
row order, and racing's rule (:func:`confidently_worse`, which looks at every row, the most
looks there can be). The error rate is the share of those candidates it drops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from oobleck import Example, FakeLM, LMRequest, Predict
from oobleck.metrics import exact_match
from oobleck.optimize._scoring import Scorer, confidently_worse

SIMULATIONS = 2000
Population = Callable[[np.random.Generator, int], np.ndarray]


def same_accuracy(p: float) -> Population:
    """Candidate and incumbent right with the same probability, independently per row."""
    return lambda rng, n: (rng.random(n) < p).astype(float) - (rng.random(n) < p).astype(float)


def balanced(share: float) -> Population:
    """A mean difference of exactly 0: ``share`` of the rows disagree, half each way (the hardest null)."""

    def make(rng: np.random.Generator, n: int) -> np.ndarray:
        k = int(n * share / 2)
        return np.array([1.0] * k + [-1.0] * k + [0.0] * (n - 2 * k))

    return make


def error_rate(population: Population, n: int, alpha: float, seed: int) -> tuple[float, int]:
    """The share of not-worse candidates racing drops, and how many were simulated."""
    rng = np.random.default_rng(seed)
    dropped = nulls = 0
    for _ in range(SIMULATIONS):
        diffs = population(rng, n)
        if diffs.mean() < 0:
            continue  # worse on this valset: dropping it is no error
        nulls += 1
        order = rng.permutation(n)
        dropped += confidently_worse(diffs[order].tolist(), population=n, alpha=alpha)
    return dropped / nulls, nulls


@pytest.mark.parametrize(
    ("name", "population", "n"),
    [
        ("same accuracy 0.5", same_accuracy(0.5), 24),
        ("same accuracy 0.8", same_accuracy(0.8), 60),
        ("same accuracy 0.5", same_accuracy(0.5), 200),
        ("all rows disagree", balanced(1.0), 24),
        ("all rows disagree", balanced(1.0), 200),
        ("30% disagree", balanced(0.3), 60),
    ],
)
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_null_candidates_are_dropped_at_most_alpha_of_the_time(
    name: str, population: Population, n: int, alpha: float
) -> None:
    rate, nulls = error_rate(population, n, alpha, seed=n)
    assert nulls >= SIMULATIONS // 3
    assert rate <= alpha, f"{name}, {n} rows: dropped {rate:.3%} of {nulls} not-worse candidates at alpha={alpha}"


def test_clearly_worse_candidates_are_dropped_early() -> None:
    rng = np.random.default_rng(0)
    n, stops = 60, []
    for _ in range(200):
        diffs = ((rng.random(n) < 0.3).astype(float) - (rng.random(n) < 0.9).astype(float)).tolist()
        stop = next((t for t in range(1, n + 1) if confidently_worse(diffs[:t], population=n)), None)
        stops.append(n if stop is None else stop)
    assert np.mean(np.array(stops) < n) >= 0.95  # dropped, nearly always
    assert np.median(stops) <= n // 3  # after a third of the rows or fewer, typically


def test_the_scorer_drops_null_candidates_at_most_alpha_of_the_time() -> None:
    """The same through the Scorer and FakeLM: equally good programs, right on different rows."""
    n, trials, dropped = 40, 60, 0
    rows = [Example(q=str(i), a="yes").with_inputs("q") for i in range(n)]
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        right_a = set(rng.choice(n, size=n // 2, replace=False).tolist())
        right_b = set(rng.choice(n, size=n // 2, replace=False).tolist())

        def program(right: set[int]) -> Predict:
            def answer(request: LMRequest) -> dict[str, str]:
                q = request.messages[-1].content.split("[[ ## q ## ]]\n")[1].split("\n")[0]
                return {"a": "yes" if int(q) in right else "no"}

            return Predict("q -> a", lm=FakeLM(answer))

        scorer = Scorer(rows, exact_match, racing=True, seed=seed)
        scorer.score("incumbent", program(right_a))
        dropped += scorer.score("candidate", program(right_b)).dropped
    assert dropped <= 0.05 * trials
