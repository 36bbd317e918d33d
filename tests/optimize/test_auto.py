"""Auto: one budget over a portfolio of optimizers, a choice on selection rows, a confirmed verdict."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from _opt_helpers import field_of, n_demos

from oobleck import Example, FakeLM, LMRequest, Predict, context
from oobleck.errors import ConfigError
from oobleck.metrics import exact_match
from oobleck.optimize import Auto, InstructionSearch, RandomSearch, auto

pytest.importorskip("optuna")  # the default portfolio's JointSearch; its absence is tested below

ROWS = [Example(q=str(i), a="even" if i % 2 == 0 else "odd").with_inputs("q") for i in range(60)]
TRAIN, VAL = ROWS[:10], ROWS[10:]  # 50 scoring rows: 35 select, 15 confirm


def parity(request: LMRequest) -> dict[str, str]:
    """Right on every row once shown a demo, "even" without one (right on half); also writes
    instructions and summaries when asked."""
    extra = {"instruction": "Answer even or odd.", "summary": "numbers and their parity"}
    try:
        q = field_of(request, "q")
    except AssertionError:  # a proposer or reflection request (not the ChatAdapter task format)
        return {**extra, "a": "even"}
    if not q.isdigit():
        return {**extra, "a": "even"}
    right = "even" if int(q) % 2 == 0 else "odd"
    return {**extra, "a": right if n_demos(request) else "even"}


def compile_auto(budget: int | None, *, seed: int = 1, **kw: Any) -> tuple[Any, FakeLM]:
    lm = FakeLM(parity)
    best = Auto(exact_match, budget=budget, **kw).compile(
        Predict("q -> a", lm=lm), trainset=TRAIN, valset=VAL, seed=seed, progress=False
    )
    return best, lm


def test_auto_keeps_the_member_that_wins_on_the_selection_rows_and_confirms_it() -> None:
    best, lm = compile_auto(600)
    scores = best.provenance["scores"]
    members = {m["name"]: m for m in scores["members"]}
    assert list(members) == ["few_shot", "format", "joint", "reflective"]
    for m in members.values():
        assert m["selection_score"] is not None and m["calls"] >= 0 and m["budget"] > 0
    top = max(m["selection_score"] for m in members.values())
    first_best = next(n for n, m in members.items() if m["selection_score"] == top)
    assert scores["winner"] == first_best == "few_shot" and scores["best_score"] == top == 100.0
    assert scores["why"].startswith("few_shot scored best on the 35 selection rows: 100.0")
    assert best.predictors()[0].demos  # the winner's program, with the LM it was given
    assert best.predictors()[0].lm is lm
    v = scores["verdict"]
    assert v["confirmed"] and v["n"] == 15 and v["significant"] and v["best_score"] == 100.0
    assert scores["selection_verdict"]["n"] == 35
    # the confirming rows were never shown to a member: only to the start and the winner, once each
    confirm = {VAL[i]["q"] for i in best.provenance["notes"]["split"]["confirm_row_indices"]}
    asked = [field_of(r, "q") for r in lm.requests if _is_task(r)]
    assert sum(1 for q in asked if q in confirm) == 2 * len(confirm)


def _is_task(request: LMRequest) -> bool:
    try:
        return field_of(request, "q").isdigit()
    except AssertionError:
        return False


def test_auto_chooses_the_winning_member_even_when_it_runs_last() -> None:
    lm = FakeLM(parity)
    members = {
        "format": InstructionSearch(exact_match, breadth=1, depth=1, n_demos=0, formats=["one_line"]),
        "few_shot": RandomSearch(exact_match, num_candidates=1, max_bootstrapped_demos=2, max_labeled_demos=2),
    }
    best = Auto(exact_match, budget=400, members=members).compile(
        Predict("q -> a", lm=lm), trainset=TRAIN, valset=VAL, seed=0, progress=False
    )
    scores = best.provenance["scores"]
    assert [m["name"] for m in scores["members"]] == ["format", "few_shot"]
    start = scores["start_score"]  # "even" on every row: right on 17 of the 35 selection rows
    assert start == pytest.approx(100 * 17 / 35)
    assert scores["members"][0]["selection_score"] == start and scores["members"][1]["selection_score"] == 100.0
    assert scores["winner"] == "few_shot" and "format 48.6" in scores["why"] and "start 48.6" in scores["why"]
    assert scores["verdict"]["confirmed"]
    assert members["few_shot"].options.confirm_fraction == 0.3  # the user's members are left as they were


@pytest.mark.parametrize("budget", [30, 80, 150, 300, 600])
@pytest.mark.parametrize("seed", [0, 1])
def test_auto_never_sends_more_calls_than_its_budget(budget: int, seed: int) -> None:
    best, lm = compile_auto(budget, seed=seed)
    assert len(lm.requests) <= budget
    scores = best.provenance["scores"]
    sent = sum(m.get("calls", 0) for m in scores["members"])
    assert sent <= budget - scores["budget"]["reserved_for_confirmation"]
    assert best.compile_usage.calls == len(lm.requests)


def test_auto_is_deterministic_with_a_seed(tmp_path: Path) -> None:
    digests = set()
    for k in range(2):
        best, _ = compile_auto(300, seed=4)
        best.save(tmp_path / f"auto{k}.json")
        digests.add(hashlib.sha256((tmp_path / f"auto{k}.json").read_bytes()).hexdigest())
    assert len(digests) == 1


def test_without_optuna_joint_search_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "_optuna_installed", lambda: False)
    best, lm = compile_auto(300)
    joint = next(m for m in best.provenance["scores"]["members"] if m["name"] == "joint")
    assert joint["skipped"].startswith("optuna is not installed (pip install 'oobleck[optuna]')")
    assert len(lm.requests) <= 300


def test_budget_and_max_lm_calls_are_one_setting() -> None:
    assert Auto(exact_match, max_lm_calls=50).budget == 50
    assert Auto(exact_match, budget=50).max_lm_calls == 50
    with pytest.raises(ConfigError, match="disagree"):
        Auto(exact_match, budget=50, max_lm_calls=60)
    with pytest.raises(ConfigError, match="searching optimizers"):
        Auto(exact_match, members={"bad": object()})  # type: ignore[dict-item]
    estimate = Auto(exact_match, budget=100).compile(
        Predict("q -> a", lm=FakeLM(parity)), trainset=TRAIN, valset=VAL, dry_run=True
    )
    assert estimate.lm_calls == 100 and estimate.breakdown["confirmation"] == 30


def test_auto_resumes_from_its_checkpoint_without_paying_twice(tmp_path: Path) -> None:
    ckpt = tmp_path / "auto.json"
    first, _ = _with_checkpoint(ckpt)
    again, lm2 = _with_checkpoint(ckpt)
    assert again.provenance["scores"]["winner"] == first.provenance["scores"]["winner"]
    assert len(lm2.requests) <= 2 * 15  # only confirmation is run again
    assert again.provenance["lm_calls"] >= first.provenance["lm_calls"] - 30


def _with_checkpoint(ckpt: Path) -> tuple[Any, FakeLM]:
    lm = FakeLM(parity)
    best = Auto(exact_match, budget=300).compile(
        Predict("q -> a", lm=lm), trainset=TRAIN, valset=VAL, seed=1, progress=False, checkpoint=ckpt
    )
    return best, lm


def test_oobleck_compile_optimizer_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from oobleck.cli import main

    def write(name: str, rows: list[Example]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps({"q": r["q"], "a": r["a"]}) + "\n" for r in rows))
        return path

    train, val = write("train.jsonl", TRAIN), write("val.jsonl", VAL)
    out = tmp_path / "auto.json"
    lm = FakeLM(parity)
    with context(lm=lm):
        code = main([
            "compile", "q -> a", "--train", str(train), "--val", str(val), "--optimizer", "auto",
            "--metric", "exact_match", "--max-lm-calls", "300", "-o", str(out),
        ])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "verdict on the confirming rows (never seen by the search): +" in err
    assert len(lm.requests) <= 300
    saved = json.loads(out.read_text())
    assert saved["provenance"]["optimizer"] == "Auto"
