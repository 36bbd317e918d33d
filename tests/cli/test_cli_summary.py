"""What `oobleck compile` and `oobleck inspect` show a person: a summary and a provenance block, rounded."""

from __future__ import annotations

import json
import re
from pathlib import Path

from oobleck import FakeLM, LMRequest, context
from oobleck.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures"


def half_right(request: LMRequest) -> dict[str, str]:
    text = request.messages[-1].content
    return {"label": "negative" if "dull" in text or "tedious" in text else "positive"}


def compile_artifact(tmp_path: Path, capsys) -> tuple[Path, str, str]:
    rows = FIXTURES / "sentiment_tiny.jsonl"
    lines = rows.read_text().splitlines()
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:6]) + "\n")
    (tmp_path / "val.jsonl").write_text("\n".join(lines[6:9]) + "\n")
    out = tmp_path / "rs.json"
    argv = ["compile", "sentence -> label", "--train", str(tmp_path / "train.jsonl"), "--val", str(tmp_path / "val.jsonl"),
            "--optimizer", "random_search", "-O", "num_candidates=2", "--metric", "exact_match", "-o", str(out)]  # fmt: skip
    with context(lm=FakeLM(half_right)):
        assert main(argv) == 0
    stdout, stderr = capsys.readouterr()
    return out, stdout, stderr


def test_compile_prints_a_rounded_summary(tmp_path, capsys):
    out, stdout, stderr = compile_artifact(tmp_path, capsys)
    data = json.loads(stdout)
    summary = data["summary"]
    assert summary["lm_calls"] == json.loads(out.read_text())["provenance"]["lm_calls"] > 0
    assert summary["prompt_tokens"] > 0 and summary["completion_tokens"] > 0 and summary["wall_s"] > 0
    first = next(line for line in stderr.splitlines() if line.startswith("RandomSearch: "))
    assert f"{summary['lm_calls']:,} LM calls" in first and "prompt +" in first and "wall time" in first
    start, best = summary["selection"]
    assert f"start {start:.1f} -> winner {best:.1f}" in stderr
    assert "verdict on the confirming rows" in stderr and f"oobleck report {out}" in stderr
    for value in re.findall(r"([\d.,]+) s\b", stderr):  # seconds: two significant digits
        assert len(value.replace(",", "").replace(".", "").lstrip("0").rstrip("0")) <= 2, value
    assert not re.search(r"\d\.\d{3,}", re.sub(r"[\d.]+ s\b", "", stderr)), "an unrounded number in the summary"


def test_inspect_shows_provenance_as_a_block_with_a_candidates_table(tmp_path, capsys):
    out, _, _ = compile_artifact(tmp_path, capsys)
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    prov = json.loads(out.read_text())["provenance"]
    assert "compiled   by RandomSearch, seed 0" in text
    assert f"cost       {prov['lm_calls']:,} LM calls" in text
    assert "provenance scores:" not in text and '"candidates"' not in text
    header = next(line for line in text.splitlines() if line.strip().startswith("id "))
    assert header.split() == ["id", "kind", "score", "errors"]
    for c in prov["scores"]["candidates"]:
        assert re.search(rf"^[* ] {c['id']:<3}.*\b{c['score']:.1f}\b", text, re.M)
    assert not re.search(r"\d\.\d{5,}", text.split("== predictor")[0]), "an unrounded number in the provenance block"
    assert main(["inspect", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["provenance"] == prov and data["adapters"]["self"]["name"] == "chat"


def test_a_hand_edited_verdict_is_shown_not_a_crash(tmp_path, capsys):
    from oobleck import Predict, load
    from oobleck.artifact import save

    verdict = {"confirmed": True, "start_score": 50, "best_score": 60, "gain": 10, "low": 2, "high": 18, "n": 9}
    for confidence in ("high", None, [0.9]):
        path = tmp_path / "edited.json"
        scores = {"start_score": 50, "best_score": 60, "verdict": {**verdict, "confidence": confidence}}
        save(Predict("question -> answer"), path, provenance={"optimizer": "X", "scores": scores})
        text = str(load(path).program.compile_summary())
        assert "verdict on the confirming rows (never seen by the search): +10.0 points (interval +2.0 to +18.0" in text
        assert main(["inspect", str(path)]) == 0, capsys.readouterr().err
        capsys.readouterr()
