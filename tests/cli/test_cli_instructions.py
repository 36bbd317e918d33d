"""`oobleck compile --optimizer instructions`, `--prompt-lm`, and what inspect / diff show of it."""

from __future__ import annotations

import json
from pathlib import Path

from oobleck import FakeLM, LMRequest, context
from oobleck.artifact import load
from oobleck.cli import main


def task_or_proposer(request: LMRequest) -> str:
    system = request.messages[0].content
    if system.startswith("Read these rows"):
        return "[[ ## summary ## ]]\nQuestions that are answered by repeating them."
    if system.startswith("You improve the instruction"):
        return "[[ ## instruction ## ]]\nRepeat the question exactly."
    value = request.messages[-1].content.split("\n")[1]
    # only the proposed instruction makes this "model" right
    return f"[[ ## answer ## ]]\n{value if system.startswith('Repeat the question') else 'no idea'}"


def _data(tmp_path: Path, n: int, name: str) -> Path:
    path = tmp_path / name
    rows = (json.dumps({"question": f"{name}{i}", "answer": f"{name}{i}"}) + "\n" for i in range(n))
    path.write_text("".join(rows))
    return path


def run_cli(capsys, *argv, lm=None):  # type: ignore[no-untyped-def]
    with context(lm=lm or FakeLM(task_or_proposer)):
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_inspect_and_diff_an_instruction_search(capsys, tmp_path):  # type: ignore[no-untyped-def]
    train, val = _data(tmp_path, 4, "train.jsonl"), _data(tmp_path, 6, "val.jsonl")
    out_path = tmp_path / "qa.json"
    code, out, err = run_cli(
        capsys,
        "compile",
        "question -> answer",
        "--train",
        train,
        "--val",
        val,
        "--optimizer",
        "instructions",
        "--metric",
        "exact_match",
        "-O",
        "breadth=1",
        "-O",
        "depth=1",
        "-O",
        "n_demos=0",
        "-o",
        out_path,
    )
    assert code == 0, err
    assert "gain on the selection rows (they chose the winner, so it is optimistic): +100.0 points" in err
    assert "verdict on the confirming rows: not confirmed (too few rows to confirm: 6 scoring rows" in err
    art = load(out_path)
    assert art.predictors["self"].signature.instructions == "Repeat the question exactly."
    assert json.loads(out)["scores"]["best_score"] == 100.0

    code, out, _ = run_cli(capsys, "inspect", out_path, "--top", "2")
    assert code == 0
    top = out.split("== top 2 of 2 candidates")[1]
    assert top.index("* #1 score 100.0  proposal") < top.index("#0 score 0.0  start")
    assert "self: Repeat the question exactly." in top

    start = tmp_path / "start.json"
    code, _, _ = run_cli(
        capsys, "compile", "question -> answer", "--train", train, "--optimizer", "labeled", "-O", "k=0", "-o", start
    )
    code, out, _ = run_cli(capsys, "diff", start, out_path)
    words = out.split("word by word: ")[1].splitlines()[0]
    assert words == "[-Given-] {+Repeat+} the [-fields `question`, produce the fields `answer`.-] {+question exactly.+}"


def test_prompt_lm_is_used_and_checked(capsys, tmp_path):  # type: ignore[no-untyped-def]
    train, val = _data(tmp_path, 4, "train.jsonl"), _data(tmp_path, 6, "val.jsonl")
    code, _, err = run_cli(
        capsys,
        "compile",
        "question -> answer",
        "--train",
        train,
        "--optimizer",
        "labeled",
        "--prompt-lm",
        "local",
        "-o",
        tmp_path / "x.json",
    )
    assert code == 1 and "--prompt-lm is for the instruction optimizers" in err
    code, _, err = run_cli(
        capsys,
        "compile",
        "question -> answer",
        "--train",
        train,
        "--val",
        val,
        "--optimizer",
        "instructions",
        "--metric",
        "exact_match",
        "--prompt-lm",
        "nonsense",
        "-o",
        tmp_path / "x.json",
    )
    assert code == 1 and "nonsense" in err
