"""JointSearch: TPE over (instruction, demo set), minibatches, periodic full evaluation, budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _opt_helpers import field_of, n_demos, sentiment_rows
from test_proposer import Review, kind

from oobleck import Cache, CachedLM, FakeLM, LMRequest, Predict
from oobleck.errors import ConfigError
from oobleck.lm.cached import cache_key
from oobleck.metrics import exact_match
from oobleck.optimize import JointSearch
from oobleck.optimize._identity import program_fingerprint

pytest.importorskip("optuna")

GOOD = "Answer negative unless the review praises the film."
POSITIVE = ("funny", "best", "delightful", "beautifully", "joy", "moving", "warm")


def joint_lm(request: LMRequest) -> dict[str, str]:
    """Right only with the GOOD instruction AND at least one demo."""
    k = kind(request)
    if k == "summary":
        return {"summary": "Movie reviews."}
    if k == "propose":
        return {"instruction": GOOD if GOOD not in request.messages[-1].content else "Something else."}
    s = field_of(request, "sentence")
    right = "positive" if any(w in s for w in POSITIVE) else "negative"
    ok = request.messages[0].content.startswith(GOOD) and n_demos(request) > 0
    return {"label": right if ok else "positive"}


def rows() -> tuple[list, list]:
    data = sentiment_rows()
    train = [r.copy(sentence=f"t{i} {r.sentence}") for i, r in enumerate(data)]
    val = [r.copy(sentence=f"v{i} {r.sentence}") for i, r in enumerate(data * 2)]
    return train, val


def opt(**kw) -> JointSearch:  # type: ignore[no-untyped-def]
    base = dict(
        auto=None,
        num_trials=12,
        num_instructions=2,
        num_demo_sets=3,
        minibatch_size=8,
        full_eval_every=3,
        max_bootstrapped_demos=1,
        max_labeled_demos=1,
    )
    return JointSearch(exact_match, **{**base, **kw})


def test_finds_the_instruction_and_demo_pair() -> None:
    train, val = rows()
    best = opt().compile(Predict(Review, lm=FakeLM(joint_lm)), trainset=train, valset=val, seed=1)
    p = best.predictors()[0]
    assert p.instructions == GOOD and len(p.demos) > 0
    scores = best.provenance["scores"]
    assert scores["best_score"] == 100.0 and scores["verdict"]["significant"]
    assert len(scores["trials"]) == 12
    assert all(t["minibatch_score"] is not None for t in scores["trials"])
    full = [c for c in scores["candidates"] if c["score"] is not None]
    assert 2 <= len(full) <= 1 + 12 // 3 + 1  # the start, then one per full-eval round at most


def test_seeded_runs_are_identical() -> None:
    train, val = rows()

    def once() -> str:
        out = opt().compile(Predict(Review, lm=FakeLM(joint_lm)), trainset=train, valset=val, seed=5)
        return json.dumps({"p": program_fingerprint(out), "prov": out.provenance}, sort_keys=True)

    assert once() == once()


@pytest.mark.parametrize("limit", [10, 40])
def test_budget_is_never_exceeded_and_resume_pays_nothing_twice(tmp_path: Path, limit: int) -> None:
    train, val = rows()
    backend = FakeLM(joint_lm)
    lm = CachedLM(backend, cache=Cache(tmp_path / "cache"))
    ckpt = tmp_path / "ck.json"
    stopped = opt(max_lm_calls=limit).compile(Predict(Review, lm=lm), trainset=train, valset=val, checkpoint=ckpt)
    assert len(backend.requests) <= limit and stopped.provenance["stopped_early"]
    resumed = opt().compile(Predict(Review, lm=lm), trainset=train, valset=val, checkpoint=ckpt)
    keys = [cache_key(backend.identity, r) for r in backend.requests]
    assert len(keys) == len(set(keys))
    fresh = opt().compile(Predict(Review, lm=FakeLM(joint_lm)), trainset=train, valset=val)
    assert program_fingerprint(fresh) == program_fingerprint(resumed)


def test_dry_run_bounds_the_real_cost() -> None:
    train, val = rows()
    lm = FakeLM(joint_lm)
    o = opt(racing=False)
    est = o.compile(Predict(Review, lm=lm), trainset=train, valset=val, dry_run=True)
    assert lm.requests == []
    o.compile(Predict(Review, lm=lm), trainset=train, valset=val)
    assert est.min_lm_calls <= len(lm.requests) <= est.lm_calls


def test_presets_and_the_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert JointSearch(exact_match, auto="medium").num_trials == 25
    assert JointSearch(exact_match, auto="light", num_trials=3).num_trials == 3
    with pytest.raises(ConfigError, match="auto"):
        JointSearch(exact_match, auto="huge")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="without auto"):
        JointSearch(exact_match, auto=None)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    train, val = rows()
    with pytest.raises(ConfigError, match=r"oobleck\[optuna\]"):
        opt().compile(Predict(Review, lm=FakeLM(joint_lm)), trainset=train, valset=val)


def test_the_callers_optuna_log_level_is_kept() -> None:
    import optuna

    train, val = rows()
    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        opt(num_trials=2, full_eval_every=2).compile(Predict(Review, lm=FakeLM(joint_lm)), trainset=train, valset=val)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)
