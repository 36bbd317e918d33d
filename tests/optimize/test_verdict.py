"""The verdict on confirming rows: chosen on some rows, judged on others the search never saw."""

from __future__ import annotations

import doctest

from _opt_helpers import field_of, n_demos

from oobleck import Example, FakeLM, LMRequest, Predict
from oobleck.metrics import exact_match
from oobleck.optimize import RandomSearch, _search
from oobleck.optimize._search import MIN_CONFIRM_ROWS, confirm_count, holdout


def test_doctests() -> None:
    assert doctest.testmod(_search).failed == 0


def _val(n: int) -> list[Example]:
    return [Example(q=str(i), a="yes").with_inputs("q") for i in range(n)]


TRAIN = [Example(q=f"t{i}", a="yes").with_inputs("q") for i in range(4)]


def _table_lm(start_right: set[int], winner_right: set[int]) -> FakeLM:
    """Zero-shot (the start) is right on ``start_right``; with demos (the winner) on ``winner_right``."""

    def answer(request: LMRequest) -> dict[str, str]:
        i = int(field_of(request, "q"))
        right = i in (winner_right if n_demos(request) else start_right)
        return {"a": "yes" if right else "no"}

    return FakeLM(answer)


def _compile(lm: FakeLM, val: list[Example], **options: object) -> dict:  # type: ignore[type-arg]
    opt = RandomSearch(exact_match, num_candidates=0, max_bootstrapped_demos=0, max_labeled_demos=1, **options)  # type: ignore[arg-type]
    best = opt.compile(Predict("q -> a", lm=lm), trainset=TRAIN, valset=val, seed=7, progress=False)
    return {"program": best, **best.provenance}


def _hand_made_table() -> tuple[list[Example], set[int], set[int]]:
    """30 rows: 20 select, 10 confirm. On the selection rows the start is right on half and the
    winner on all (+50 points, significant); on the confirming rows each is right on 5, the
    winner on two the start gets wrong and wrong on two the start gets right (0 points)."""
    val = _val(30)
    select_idx, confirm_idx = holdout(val, confirm_count(30, 0.3)[0], 7)
    assert len(select_idx) == 20 and len(confirm_idx) == 10
    start_right = set(select_idx[::2]) | set(confirm_idx[:5])
    winner_right = set(select_idx) | set(confirm_idx[:3]) | set(confirm_idx[5:7])
    return val, start_right, winner_right


def test_significant_on_the_selection_rows_but_not_on_the_confirming_rows() -> None:
    val, start_right, winner_right = _hand_made_table()
    lm = _table_lm(start_right, winner_right)
    out = _compile(lm, val)
    scores = out["scores"]
    sel, v = scores["selection_verdict"], scores["verdict"]
    assert sel["n"] == 20 and sel["gain"] == 50.0 and sel["significant"]
    assert v["confirmed"] and v["n"] == 10 and v["gain"] == 0.0 and not v["significant"]
    assert (v["start_score"], v["best_score"]) == (50.0, 50.0)
    assert out["program"].predictors()[0].demos  # without require_significant the winner is returned
    # no candidate was ever scored on a confirming row: only the start and the winner, once each
    confirm_rows = set(out["notes"]["split"]["confirm_row_indices"])
    asked = [int(field_of(r, "q")) for r in lm.requests]
    assert sum(1 for i in asked if i in confirm_rows) == 2 * len(confirm_rows)


def test_require_significant_decides_on_the_confirming_rows() -> None:
    val, start_right, winner_right = _hand_made_table()
    out = _compile(_table_lm(start_right, winner_right), val, require_significant=True)
    assert out["scores"]["selection_verdict"]["significant"]  # the old rule would have passed it
    assert out["scores"]["returned"] == "start (gain not significant on the confirming rows)"
    assert out["program"].predictors()[0].demos == []

    # When the gain holds on the confirming rows too, the winner is kept.
    everywhere = set(range(30))
    start_half = {i for i in range(30) if i % 2}
    kept = _compile(_table_lm(start_half, everywhere), val, require_significant=True)
    assert kept["scores"]["verdict"]["confirmed"] and kept["scores"]["verdict"]["significant"]
    assert "returned" not in kept["scores"] and kept["program"].predictors()[0].demos


def test_too_few_rows_to_confirm_says_so_instead_of_an_interval() -> None:
    val = _val(2 * MIN_CONFIRM_ROWS - 1)  # 19 rows: 10 to confirm would leave 9 to select on
    out = _compile(_table_lm(set(), set(range(19))), val)
    v = out["scores"]["verdict"]
    assert v["confirmed"] is False and set(v) == {"confirmed", "reason"}
    assert v["reason"].startswith("too few rows to confirm: 19 scoring rows cannot hold out 10 confirming rows")
    assert out["scores"]["selection_verdict"]["n"] == 19  # every row selects
    refused = _compile(_table_lm(set(), set(range(19))), val, require_significant=True)
    assert refused["scores"]["returned"].startswith("start (gain not confirmed: too few rows to confirm")
    off = _compile(_table_lm(set(), set(range(40))), _val(40), confirm_fraction=0.0)
    assert off["scores"]["verdict"]["reason"] == "confirmation is switched off (confirm_fraction=0)"


def test_the_holdout_is_seeded_and_keeps_each_label_s_share() -> None:
    rows = [Example(q=str(i), label="pos" if i % 4 == 0 else "neg").with_inputs("q") for i in range(40)]
    select_idx, confirm_idx = holdout(rows, 12, 3)
    assert len(confirm_idx) == 12 and sorted(select_idx + confirm_idx) == list(range(40))
    labels = [rows[i].label for i in confirm_idx]
    assert labels.count("pos") == 3 and labels.count("neg") == 9  # 10 of 40 positive -> 3 of 12
    assert holdout(rows, 12, 3) == (select_idx, confirm_idx)
    assert holdout(rows, 12, 4)[1] != confirm_idx
    assert confirm_count(100, 0.3) == (30, None) and confirm_count(20, 0.3) == (10, None)


def test_the_budget_keeps_back_what_confirmation_costs() -> None:
    val, start_right, winner_right = _hand_made_table()
    lm = _table_lm(start_right, set(range(30)))
    # zero-shot (20) + labelled (20) + confirmation (2 x 10): 60 calls; the search gets 40
    out = _compile(lm, val, max_lm_calls=60)
    assert len(lm.requests) <= 60
    assert out["scores"]["verdict"]["confirmed"] and out["scores"]["verdict"]["n"] == 10
    tight = _table_lm(start_right, set(range(30)))
    stopped = _compile(tight, val, max_lm_calls=50)  # the search stops after the start; nothing to confirm
    assert len(tight.requests) <= 50 and stopped["stopped_early"]
