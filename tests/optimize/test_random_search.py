"""RandomSearch: candidates scored on held-out rows, never on the trainset by default."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from _opt_helpers import field_of, n_demos, sentiment_rows

from oobleck import Cache, CachedLM, Example, FakeLM, LMRequest, Predict
from oobleck.lm.cached import cache_key
from oobleck.metrics import exact_match
from oobleck.optimize import RandomSearch
from oobleck.optimize._identity import program_fingerprint


def needs_demos(request: LMRequest) -> dict[str, str]:
    """Answers right only when shown at least one demo (so zero-shot scores 0)."""
    s = field_of(request, "sentence")
    right = (
        "positive"
        if any(w in s for w in ("funny", "best", "delightful", "beautifully", "joy", "moving"))
        else "negative"
    )
    if n_demos(request) == 0:
        return {"label": "positive" if right == "negative" else "negative"}
    return {"label": right}


def tagged(rows: list[Example], tag: str) -> list[Example]:
    return [r.copy(sentence=f"{tag}: {r.sentence}") for r in rows]


def split_rows() -> tuple[list[Example], list[Example]]:
    rows = sentiment_rows()
    return tagged(rows[:6], "train"), tagged(rows[6:], "val")


def test_scores_candidates_on_the_valset_only_and_keeps_the_best() -> None:
    train, val = split_rows()
    lm = FakeLM(needs_demos)
    opt = RandomSearch(exact_match, num_candidates=3, max_bootstrapped_demos=2, max_labeled_demos=2)
    best = opt.compile(Predict("sentence -> label", lm=lm), trainset=train, valset=val)
    queries = [field_of(r, "sentence") for r in lm.requests]
    train_queries = [q for q in queries if q.startswith("train:")]
    val_queries = [q for q in queries if q.startswith("val:")]
    # train rows were only ever asked as teacher runs: once each at most (shared across candidates)
    assert len(train_queries) == len(set(train_queries))
    assert len(val_queries) == (3 + 3) * len(val)
    scores = best.provenance["scores"]
    kinds = [c["kind"] for c in scores["candidates"]]
    assert kinds == ["zero_shot", "labeled", "bootstrap"] + ["bootstrap_shuffled"] * 3
    assert scores["candidates"][0]["score"] == 0.0
    assert scores["best"] != -3 and scores["best_score"] == 100.0
    assert len(best.predictors()[0].demos) > 0
    assert best.provenance["notes"]["split"]["valset"] == "given"


def test_without_a_valset_it_splits_and_warns() -> None:
    train, _ = split_rows()
    lm = FakeLM(needs_demos)
    with pytest.warns(UserWarning, match="no valset given"):
        best = RandomSearch(exact_match, num_candidates=1, max_labeled_demos=1).compile(
            Predict("sentence -> label", lm=lm), trainset=train, seed=5
        )
    split = best.provenance["notes"]["split"]
    held_out = {train[i].sentence for i in split["valset_rows"]}
    assert split["valset"] == "split from trainset" and len(held_out) == 3
    # the held-out rows are never bootstrapped from, nor shown as demos
    teacher_queries = {field_of(r, "sentence") for r in lm.requests if r.sample_index == 0 and n_demos(r) == 0}
    assert all(d["sentence"] not in held_out for p in best.predictors() for d in p.demos)
    assert held_out <= teacher_queries  # asked only when candidates were scored


def test_valset_equal_to_trainset_is_allowed_when_explicit() -> None:
    train, _ = split_rows()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        best = RandomSearch(exact_match, num_candidates=1).compile(
            Predict("sentence -> label", lm=FakeLM(needs_demos)), trainset=train, valset=train
        )
    assert best.provenance["notes"]["split"]["valset"] == "trainset (explicit)"


def test_overlapping_valset_warns_about_leakage() -> None:
    train, val = split_rows()
    with pytest.warns(UserWarning, match="2 of 8 valset rows also appear in the trainset"):
        RandomSearch(exact_match, num_candidates=0).compile(
            Predict("sentence -> label", lm=FakeLM(needs_demos)), trainset=train, valset=val + train[:2]
        )


def test_seeded_and_never_mutating() -> None:
    train, val = split_rows()
    program = Predict("sentence -> label", lm=FakeLM(needs_demos))
    before = program_fingerprint(program)
    opt = RandomSearch(exact_match, num_candidates=4, max_bootstrapped_demos=3, max_labeled_demos=4)
    a = opt.compile(program, trainset=train, valset=val, seed=11)
    b = opt.compile(Predict("sentence -> label", lm=FakeLM(needs_demos)), trainset=train, valset=val, seed=11)
    assert program_fingerprint(program) == before
    assert program_fingerprint(a) == program_fingerprint(b)
    assert a.provenance == b.provenance


def test_stop_at_score() -> None:
    train, val = split_rows()
    best = RandomSearch(exact_match, num_candidates=5, stop_at_score=100.0).compile(
        Predict("sentence -> label", lm=FakeLM(needs_demos)), trainset=train, valset=val
    )
    assert [c["id"] for c in best.provenance["scores"]["candidates"]] == [-3, -2]


def test_dry_run_bounds_the_real_cost() -> None:
    train, val = split_rows()
    opt = RandomSearch(exact_match, num_candidates=3, max_bootstrapped_demos=2)
    lm = FakeLM(needs_demos)
    est = opt.compile(Predict("sentence -> label", lm=lm), trainset=train, valset=val, dry_run=True)
    assert lm.requests == []
    assert est.breakdown == {"bootstrap": 6, "validation": 36}
    opt.compile(Predict("sentence -> label", lm=lm), trainset=train, valset=val)
    assert est.min_lm_calls <= len(lm.requests) <= est.lm_calls


@pytest.mark.parametrize("limit", [9, 13])  # stops mid-evaluation, then mid-bootstrap
def test_budget_stop_then_resume_makes_no_repeated_call(tmp_path: Path, limit: int) -> None:
    train, val = split_rows()
    backend = FakeLM(needs_demos)
    lm = CachedLM(backend, cache=Cache(tmp_path / "cache"))
    ckpt = tmp_path / "rs.json"

    def opt(limit: int | None) -> RandomSearch:
        return RandomSearch(
            exact_match, num_candidates=3, max_bootstrapped_demos=2, max_labeled_demos=2, max_lm_calls=limit
        )

    stopped = opt(limit).compile(Predict("sentence -> label", lm=lm), trainset=train, valset=val, checkpoint=ckpt)
    assert stopped.provenance["stopped_early"] is True
    assert len(backend.requests) == stopped.provenance["lm_calls"] <= limit
    scored = [c for c in stopped.provenance["scores"]["candidates"] if c.get("score") is not None]
    assert 1 <= len(scored) < 6

    resumed = opt(None).compile(Predict("sentence -> label", lm=lm), trainset=train, valset=val, checkpoint=ckpt)
    keys = [cache_key(backend.identity, r) for r in backend.requests]
    assert len(keys) == len(set(keys))
    assert resumed.provenance["stopped_early"] is False

    fresh = opt(None).compile(Predict("sentence -> label", lm=FakeLM(needs_demos)), trainset=train, valset=val)
    assert program_fingerprint(fresh) == program_fingerprint(resumed)
    assert fresh.provenance["scores"] == resumed.provenance["scores"]
    # Nothing was paid for twice: both sessions' fresh calls (the checkpoint carries the first
    # session's) are exactly an uninterrupted run's.
    assert resumed.compile_usage.calls == len(backend.requests) == fresh.compile_usage.calls
    assert len(backend.requests) == fresh.provenance["lm_calls"]
    # Provenance counts requests, cached or not: a resumed run may re-read a few from the cache.
    assert resumed.provenance["lm_calls"] >= fresh.provenance["lm_calls"]


def test_budget_before_any_candidate_returns_the_program_unchanged() -> None:
    train, val = split_rows()
    program = Predict("sentence -> label", lm=FakeLM(needs_demos), demos=[train[0]])
    best = RandomSearch(exact_match, max_lm_calls=1).compile(program, trainset=train, valset=val)
    assert best.provenance["stopped_early"] is True and best.provenance["scores"]["best"] is None
    assert program_fingerprint(best) == program_fingerprint(program)


def test_verdict_is_recorded_and_require_significant_keeps_the_start() -> None:
    train = split_rows()[0]
    val = tagged(sentiment_rows() * 3, "val")  # 36 rows: 11 held out to confirm, 25 select
    opt = RandomSearch(exact_match, num_candidates=1, max_bootstrapped_demos=2, max_labeled_demos=2)
    best = opt.compile(Predict("sentence -> label", lm=FakeLM(needs_demos)), trainset=train, valset=val)
    scores = best.provenance["scores"]
    # zero-shot (the start) is wrong on every row, the winner right on every row: on both sides
    sel, v = scores["selection_verdict"], scores["verdict"]
    assert sel["gain"] == 100.0 and sel["significant"] and sel["n"] == 25
    assert v["confirmed"] and v["gain"] == 100.0 and v["low"] == 100.0 and v["significant"] and v["n"] == 11
    assert scores["start_score"] == 0.0
    assert best.provenance["notes"]["split"]["confirm_rows"] == 11

    always_right = FakeLM(
        lambda r: {
            "label": "positive"
            if "val: " in field_of(r, "sentence")
            and any(
                w in field_of(r, "sentence") for w in ("funny", "best", "delightful", "beautifully", "joy", "moving")
            )
            else "negative"
        }
    )
    start = Predict("sentence -> label", lm=always_right)
    opt = RandomSearch(exact_match, num_candidates=1, max_labeled_demos=2, require_significant=True)
    kept = opt.compile(start, trainset=train, valset=val)
    assert kept.provenance["scores"]["verdict"] == {
        "confirmed": False,
        "reason": "the starting program won the selection; there is no gain to confirm",
    }
    assert kept.provenance["scores"]["returned"].startswith("start (gain not confirmed: the starting program won")
    assert kept.predictors()[0].demos == []


def test_racing_reports_the_calls_it_saved() -> None:
    rows = sentiment_rows()
    train = tagged(rows[:4], "train")
    val = tagged(rows * 3, "val")  # 36 rows, enough for racing to decide
    lm = FakeLM(needs_demos)
    opt = RandomSearch(exact_match, num_candidates=2, max_bootstrapped_demos=1, max_labeled_demos=1, racing=True)
    # The zero-shot candidate is scored first and is always wrong; once a better one is the
    # incumbent, later bad candidates are dropped. Here every demo candidate is right, so none is.
    best = opt.compile(Predict("sentence -> label", lm=lm), trainset=train, valset=val)
    racing = best.provenance["scores"]["racing"]
    assert racing == {"dropped": 0, "rows_skipped": 0, "calls_saved": 0, "alpha": 0.05, "min_rows": 5}
    assert best.provenance["scores"]["best_score"] == 100.0


def test_bootstrap_options_pass_through_and_unknown_ones_are_named() -> None:
    from oobleck import ConfigError

    opt = RandomSearch(exact_match, max_bootstrapped_demos=2, max_labeled_demos=3, teacher_shots=0)
    assert (opt._bootstrap.max_bootstrapped_demos, opt._bootstrap.max_labeled_demos) == (2, 3)
    assert opt._settings()["teacher_shots"] == 0
    with pytest.raises(ConfigError, match="max_bootstraped_demos"):
        RandomSearch(exact_match, max_bootstraped_demos=2)
    with pytest.raises(ConfigError, match="max_rounds"):
        RandomSearch(exact_match, max_rounds=0)
