"""A budget ledger whose last line a kill cut short still counts what later sessions record."""

from __future__ import annotations

from pathlib import Path

from oobleck._checkpoint import Checkpoint, Ledger
from oobleck.lm.types import Usage


def _ledger(path: Path) -> Ledger:
    ledger = Checkpoint(path, {"compile": 1}).ledger()
    assert ledger is not None
    return ledger


def test_a_torn_last_line_does_not_swallow_the_next_sessions_first_record(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.json"
    first = _ledger(ckpt)
    first.open(resume=False)
    first.record(1, 10, None)
    first.record(-1, -10, Usage(calls=1, prompt_tokens=4))
    first.close()
    with open(f"{ckpt}.ledger", "a", encoding="utf-8") as fh:
        fh.write('{"held": [1, ')  # killed while writing a reservation: that call was never sent

    second = _ledger(ckpt)
    assert second.open(resume=True) == Usage(calls=1, prompt_tokens=4)
    second.record(1, 10, None)  # sent, then the process is killed before it settles
    second.close()

    spent = _ledger(ckpt).open(resume=True)
    assert spent is not None
    assert spent.calls == 2  # the settled call and the one in flight at the kill
