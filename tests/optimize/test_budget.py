"""Budget and checkpoint helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from oobleck import BudgetExceededError, ConfigError, Usage
from oobleck._budget import Budget, active
from oobleck._checkpoint import Checkpoint


def test_budget_stops_at_the_limit_and_before_a_run_that_would_cross_it() -> None:
    b = Budget(max_lm_calls=5)
    b.check()
    b.charge(Usage(calls=2, prompt_tokens=10))
    b.check()
    b.charge(Usage(calls=2))
    with pytest.raises(
        BudgetExceededError, match=r"max_lm_calls=5 reached \(4 LM calls sent or in flight; a run may take 2 more\)"
    ):
        b.check()  # the largest run so far (2 calls) would make 6
    assert b.stopped


def test_cache_hits_are_free_and_no_limit_never_stops() -> None:
    b = Budget(max_lm_calls=1)
    for _ in range(10):
        b.check()
        b.charge(Usage(cache_hits=1))
    unlimited = Budget()
    unlimited.charge(Usage(calls=10**6, prompt_tokens=10**9))
    unlimited.check()
    assert not unlimited.limited and b.limited


def test_token_limit_and_restored_spending() -> None:
    b = Budget(max_tokens=100, spent=Usage(prompt_tokens=100))
    with pytest.raises(BudgetExceededError):
        b.check()
    with pytest.raises(ConfigError):
        Budget(max_lm_calls=-1)


def test_activate_is_scoped() -> None:
    b = Budget(max_lm_calls=3)
    assert active() is None
    with b.activate():
        assert active() is b
    assert active() is None


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ck.json"
    ck = Checkpoint(path, {"optimizer": "X", "seed": 1})
    assert ck.load() is None
    ck.save({"runs": {"0:0": 1}})
    assert Checkpoint(path, {"seed": 1, "optimizer": "X"}).load() == {"runs": {"0:0": 1}}
    with pytest.raises(ConfigError, match="different compile"):
        Checkpoint(path, {"optimizer": "X", "seed": 2}).load()
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        ck.load()
    path.write_text("[]")
    with pytest.raises(ConfigError, match="not an oobleck checkpoint"):
        ck.load()
    Checkpoint(None, {}).save({"ignored": True})  # disabled checkpoints write nothing


def test_an_estimate_that_cannot_dry_run_says_so_and_is_not_zero() -> None:
    import warnings

    from oobleck import Example, FakeLM, Module, Predict
    from oobleck.metrics import exact_match
    from oobleck.optimize import BootstrapFewShot

    class NeedsRealNumbers(Module):
        def __init__(self) -> None:
            self.count = Predict("text -> n: int")
            self.say = Predict("text, n -> answer")

        def forward(self, text):  # type: ignore[no-untyped-def]
            n = self.count(text=text).n
            if n == 0:  # the dry run's placeholder: this program cannot be dry-run
                raise ValueError("needs a real count")
            return self.say(text=text, n=n)

    rows = [Example(text="a b c " * 20, answer="3").with_inputs("text") for _ in range(4)]
    program = NeedsRealNumbers().set_lm(FakeLM([{"n": 1}]))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        estimate = BootstrapFewShot(exact_match).compile(program, trainset=rows, dry_run=True)
    assert any("could not dry-run NeedsRealNumbers" in str(w.message) for w in seen)
    assert estimate.prompt_tokens > 0 and estimate.lm_calls > 0
