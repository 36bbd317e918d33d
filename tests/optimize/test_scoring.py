"""The shared scoring loop: paired intervals, racing, selection and the verdict, on hand-made tables."""

from __future__ import annotations

import doctest
import math

import pytest
from _opt_helpers import field_of

from oobleck import Example, FakeLM, Predict
from oobleck.errors import ConfigError
from oobleck.metrics import exact_match, outcome
from oobleck.optimize import _scoring
from oobleck.optimize._scoring import Scorer, paired_interval, select, t_quantile


def test_doctests() -> None:
    assert doctest.testmod(_scoring).failed == 0


def test_t_quantile_matches_tables() -> None:
    # Standard t-table values (two-sided 95%: the 0.975 quantile).
    table = {1: 12.706, 2: 4.303, 3: 3.182, 5: 2.571, 10: 2.228, 30: 2.042, 100: 1.984}
    for df, expected in table.items():
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-3)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError):
        t_quantile(1.0, 3)


def test_interval_on_a_hand_made_paired_table() -> None:
    # Ten rows: the candidate fixes rows 0-3 and breaks row 9; the rest agree.
    cand = [1, 1, 1, 1, 1, 0, 1, 0, 1, 0]
    base = [0, 0, 0, 0, 1, 0, 1, 0, 1, 1]
    # diffs (points): 100 x4, 0 x5, -100 x1 -> mean 30; sd by hand:
    diffs = [100.0] * 4 + [0.0] * 5 + [-100.0]
    mean = 30.0
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 9)
    half = 2.262157 * sd / math.sqrt(10)  # t(0.975, 9) from a table
    iv = paired_interval(cand, base)
    assert iv.gain == pytest.approx(30.0)
    assert iv.low == pytest.approx(mean - half, abs=0.02)
    assert iv.high == pytest.approx(mean + half, abs=0.02)
    assert iv.n == 10 and not iv.significant  # -3.6 .. 63.6 includes 0
    # The same gain on four times the rows is significant.
    assert paired_interval(cand * 4, base * 4).significant


def test_interval_edge_cases() -> None:
    same = paired_interval([1, 0, 1], [1, 0, 1])
    assert (same.gain, same.low, same.high) == (0.0, 0.0, 0.0) and not same.significant
    one = paired_interval([1], [0])
    assert one.gain == 100.0 and (one.low, one.high) == (-100.0, 100.0)  # scores in 0..1: cut at +-100
    assert paired_interval([5.0], [0.0]).low == -math.inf  # other scales are not cut
    assert paired_interval([1, 1, 1, 0], [0, 1, 0, 0]).high == 100.0
    with pytest.raises(ConfigError, match="same rows"):
        paired_interval([1, 0], [1])
    with pytest.raises(ConfigError):
        paired_interval([], [])


def test_select_prefers_the_best_then_the_shortest_within_tolerance() -> None:
    means = {"a": 80.0, "b": 79.0, "c": 70.0, "d": 80.0}
    tokens = {"a": 900, "b": 300, "c": 10, "d": 100}
    assert select(means, tokens) == "a"  # first of the ties
    assert select(means, tokens, tolerance=0.0) == "d"
    assert select(means, tokens, tolerance=2.0) == "d"
    assert select(means, {**tokens, "b": 50}, tolerance=2.0) == "b"
    assert select(means, tokens, tolerance=20.0) == "c"
    with pytest.raises(ConfigError):
        select({}, {})


def test_the_metric_rule_accepts_feedback_forms() -> None:
    class Scored:
        score = 0.5
        feedback = "half right"

    assert outcome({"score": 1, "feedback": "ok"}) == (1.0, "ok")
    assert outcome({"score": 0}) == (0.0, None)
    assert outcome(Scored()) == (0.5, "half right")
    assert outcome(True) == (1.0, None)
    assert outcome(3) == (3.0, None)
    with pytest.raises(TypeError, match="score with feedback"):
        outcome("yes")
    with pytest.raises(TypeError, match="must include 'score'"):
        outcome({"feedback": "no score"})


def test_scorer_takes_a_feedback_metric() -> None:
    rows = [Example(q=str(i), a="yes").with_inputs("q") for i in range(4)]
    lm = FakeLM([{"a": "yes"}, {"a": "no"}], cycle=True)

    def fb(ex, pred, trace=None):
        return {"score": float(pred.a == ex.a), "feedback": "checked"}

    c = Scorer(rows, fb, racing=False).score("k", Predict("q -> a", lm=lm))
    assert c.scores == {0: 1.0, 1: 0.0, 2: 1.0, 3: 0.0} and c.errors == 0


def _rows(n: int) -> list[Example]:
    return [Example(q=str(i), a="yes").with_inputs("q") for i in range(n)]


def _program(right_every: int) -> tuple[Predict, FakeLM]:
    """Right on rows whose index is a multiple of ``right_every`` (1: always right)."""

    def answer(request):  # type: ignore[no-untyped-def]
        return {"a": "yes" if int(field_of(request, "q")) % right_every == 0 else "no"}

    lm = FakeLM(answer)
    return Predict("q -> a", lm=lm), lm


def test_racing_drops_a_clearly_worse_candidate_and_keeps_a_tied_one() -> None:
    rows = _rows(60)
    scorer = Scorer(rows, exact_match, racing=True, seed=3)
    assert scorer.min_race_rows == 6 and scorer.chunk == 5  # 10% of 60 rows; 60 / 12 rows a look
    assert sorted(scorer.order) == list(range(60)) and scorer.order != list(range(60))  # a seeded shuffle
    good, _ = _program(1)
    scorer.score("good", good)
    assert scorer.incumbent() == "good"

    bad, bad_lm = _program(10**9)  # right on row 0 only
    result = scorer.score("bad", bad)
    scored = len(result.scores)
    assert result.dropped and 6 <= scored < 60 and len(bad_lm.requests) == scored
    # the rows it was scored on are the first of the seeded order, not the first of the valset
    assert sorted(result.scores) == sorted(scorer.order[:scored])
    report = scorer.racing_report()
    assert report == {
        "dropped": 1,
        "rows_skipped": 60 - scored,
        "calls_saved": 60 - scored,
        "alpha": 0.05,
        "min_rows": 6,
    }

    tied, tied_lm = _program(1)
    result = scorer.score("tied", tied)
    assert not result.dropped and len(tied_lm.requests) == 60 and scorer.complete("tied")


def test_cache_hits_are_not_counted_as_calls_saved() -> None:
    from oobleck.lm.cached import Cache, CachedLM

    rows = _rows(40)
    good, _ = _program(1)
    bad, _ = _program(10**9)
    cached = CachedLM(bad.lm, Cache(None))
    warm = Predict("q -> a", lm=cached)
    for ex in rows:  # every answer of the bad program is in the cache before the search
        warm(**ex.inputs())
    scorer = Scorer(rows, exact_match, racing=True, seed=1)
    scorer.score("good", good)
    result = scorer.score("bad", warm)
    assert result.dropped and result.calls == 0 and result.cache_hits == len(result.scores)
    assert scorer.racing_report()["calls_saved"] == 0 and scorer.racing_report()["rows_skipped"] > 0


def test_minibatch_rows_are_reused_by_the_full_evaluation() -> None:
    rows = _rows(12)
    scorer = Scorer(rows, exact_match, racing=False)
    prog, lm = _program(2)
    part = scorer.score("p", prog, rows=[0, 3, 5])
    assert sorted(part.scores) == [0, 3, 5] and len(lm.requests) == 3
    assert part.mean() == pytest.approx(100 / 3)
    scorer.score("p", prog)
    assert len(lm.requests) == 12 and scorer.complete("p")
    assert scorer.row_scores("p") == [1.0 if i % 2 == 0 else 0.0 for i in range(12)]
    # A checkpoint round trip keeps every row.
    again = Scorer(rows, exact_match, state=scorer.to_data())
    assert again.row_scores("p") == scorer.row_scores("p")
