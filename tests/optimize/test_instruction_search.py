"""InstructionSearch: coordinate ascent over instructions; budget, resume, determinism, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _opt_helpers import field_of, sentiment_rows
from test_proposer import Review, kind

from oobleck import Cache, CachedLM, FakeLM, LMRequest, Predict
from oobleck.errors import ConfigError
from oobleck.lm.cached import cache_key
from oobleck.metrics import exact_match
from oobleck.optimize._identity import program_fingerprint
from oobleck.optimize.instruction_search import InstructionSearch

GOOD = "Answer negative unless the review praises the film."


def instruction_sensitive(request: LMRequest) -> dict[str, str]:
    """A task LM that is right only under the GOOD instruction; proposals cycle by sample."""
    k = kind(request)
    if k == "summary":
        return {"summary": "Movie review sentences."}
    if k == "propose":
        tried = field_of(request, "tried")
        ideas = ["Label the review.", GOOD, "Say positive or negative.", "Think about the review."]
        fresh = [i for i in ideas if i not in tried]
        return {"instruction": fresh[0] if fresh else "Nothing new."}
    system = request.messages[0].content
    s = field_of(request, "sentence")
    right = (
        "positive"
        if any(w in s for w in ("funny", "best", "delightful", "beautifully", "joy", "moving", "warm"))
        else "negative"
    )
    return {"label": right if system.startswith(GOOD) else "positive"}


def rows() -> tuple[list, list]:
    data = sentiment_rows()
    return data[:6], data[6:]


def test_finds_the_instruction_that_scores_and_states_the_verdict() -> None:
    train, val = rows()
    lm = FakeLM(instruction_sensitive)
    best = InstructionSearch(exact_match, breadth=2, depth=2, n_demos=1).compile(
        Predict(Review, lm=lm), trainset=train, valset=val
    )
    assert best.predictors()[0].instructions == GOOD
    scores = best.provenance["scores"]
    assert scores["best_score"] == 100.0 and scores["start_score"] < 100.0
    assert scores["selection_verdict"]["gain"] == pytest.approx(100.0 - scores["start_score"])
    assert scores["verdict"]["confirmed"] is False and "too few rows to confirm" in scores["verdict"]["reason"]
    cands = scores["candidates"]
    assert cands[0]["kind"] == "start" and cands[0]["parent"] is None
    good = next(c for c in cands if c["instructions"]["self"] == GOOD)
    assert good["parent"] == 0 and good["step"] == 1 and good["optimizer"] == "InstructionSearch"
    # step 2 builds on the winner of step 1
    assert all(c["parent"] == good["id"] for c in cands if c["step"] == 2)
    assert best.provenance["settings"]["breadth"] == 2


def test_seeded_search_is_byte_identical_and_never_mutates() -> None:
    train, val = rows()
    program = Predict(Review, lm=FakeLM(instruction_sensitive))
    before = program_fingerprint(program)

    def once() -> str:
        opt = InstructionSearch(exact_match, breadth=2, depth=2, formats=["one_line", "chat"])
        out = opt.compile(Predict(Review, lm=FakeLM(instruction_sensitive)), trainset=train, valset=val, seed=3)
        return json.dumps({"p": program_fingerprint(out), "prov": out.provenance}, sort_keys=True)

    assert once() == once()
    assert program_fingerprint(program) == before


@pytest.mark.parametrize("limit", [5, 11, 17])
def test_budget_is_never_exceeded_proposer_calls_included(tmp_path: Path, limit: int) -> None:
    train, val = rows()
    backend = FakeLM(instruction_sensitive)
    lm = CachedLM(backend, cache=Cache(tmp_path / "cache"))
    ckpt = tmp_path / "ck.json"

    def opt(max_calls: int | None) -> InstructionSearch:
        return InstructionSearch(exact_match, breadth=2, depth=2, n_demos=1, max_lm_calls=max_calls)

    stopped = opt(limit).compile(Predict(Review, lm=lm), trainset=train, valset=val, checkpoint=ckpt)
    assert len(backend.requests) <= limit
    assert stopped.provenance["stopped_early"] is True
    resumed = opt(None).compile(Predict(Review, lm=lm), trainset=train, valset=val, checkpoint=ckpt)
    keys = [cache_key(backend.identity, r) for r in backend.requests]
    assert len(keys) == len(set(keys))  # nothing paid twice
    fresh = opt(None).compile(Predict(Review, lm=FakeLM(instruction_sensitive)), trainset=train, valset=val)
    assert program_fingerprint(fresh) == program_fingerprint(resumed)
    assert fresh.provenance["scores"] == resumed.provenance["scores"]
    assert resumed.compile_usage.calls == len(backend.requests) == fresh.compile_usage.calls


def test_dry_run_bounds_the_real_cost() -> None:
    train, val = rows()
    lm = FakeLM(instruction_sensitive)
    opt = InstructionSearch(exact_match, breadth=2, depth=2, n_demos=1, formats=["one_line"], racing=False)
    est = opt.compile(Predict(Review, lm=lm), trainset=train, valset=val, dry_run=True)
    assert lm.requests == []
    opt.compile(Predict(Review, lm=lm), trainset=train, valset=val)
    assert est.min_lm_calls <= len(lm.requests) <= est.lm_calls


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="unknown format"):
        InstructionSearch(exact_match, formats=["fancy"])
    with pytest.raises(ConfigError, match="breadth"):
        InstructionSearch(exact_match, breadth=0)
