"""A row whose value is a set (gold answers, say) can be hashed and written like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from oobleck import Example, FakeLM, Predict, evaluate
from oobleck._hashing import rows_sha256
from oobleck.example import from_data, to_data
from oobleck.metrics import ExactMatch

ROOT = Path(__file__).resolve().parents[1]


def _row() -> Example:
    return Example(question="capital?", answer={"Paris", "paris", "PARIS"}).with_inputs("question")


def test_a_set_valued_row_is_json_data_and_comes_back() -> None:
    data = to_data(_row())
    assert data["fields"]["answer"] == ["PARIS", "Paris", "paris"]
    assert from_data(json.loads(json.dumps(data))).inputs() == {"question": "capital?"}


def test_a_set_valued_row_hashes_the_same_in_every_process() -> None:
    script = (
        "from oobleck import Example; from oobleck._hashing import rows_sha256; "
        "print(rows_sha256([Example(q='x', answer={'alpha', 'beta', 'gamma', 'delta'}).with_inputs('q')]))"
    )
    hashes = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        hashes.add(done.stdout.strip())
    assert len(hashes) == 1, hashes
    assert rows_sha256([_row()]) is not None


def test_evaluation_with_set_golds_writes_json_and_csv(tmp_path: Path) -> None:
    program = Predict("question -> answer", lm=FakeLM([{"answer": "Paris"}]))
    result = evaluate(program, [_row()], ExactMatch(field="answer"), progress=False)
    assert result.score == 100.0
    result.to_json(tmp_path / "eval.json")
    result.to_csv(tmp_path / "eval.csv")
    written = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert written["rows"][0]["example"]["answer"] == ["PARIS", "Paris", "paris"]
    assert '""PARIS"", ""Paris"", ""paris""' in (tmp_path / "eval.csv").read_text(encoding="utf-8")
