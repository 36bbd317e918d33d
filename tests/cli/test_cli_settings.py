"""A CLI that says no early: settings refused before any work, and streaming input answered line by line."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted_lms import echo

from oobleck import FakeLM, Predict, context
from oobleck.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures"
ROOT = Path(__file__).parents[2]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(f'{{"question": "q{i}", "answer": "q{i}"}}\n' for i in range(4)), encoding="utf-8")
    Predict("question -> answer").save(tmp_path / "qa.json")
    return {"train": train, "art": tmp_path / "qa.json", "dir": tmp_path}


def _usage_error(capsys, argv: list[str]) -> str:
    calls: list[object] = []

    def counting(request: object) -> str:
        calls.append(request)
        return echo(request)  # type: ignore[arg-type]

    with context(lm=FakeLM(counting)), pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and calls == [], err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "flag, value, says",
    [
        ("--temperature", "nan", "between 0 and 2"),
        ("--temperature", "inf", "between 0 and 2"),
        ("--temperature", "-0.5", "between 0 and 2"),
        ("--temperature", "hot", "between 0 and 2"),
        ("--threads", "0", "integer >= 1"),
        ("--threads", "-1", "integer >= 1"),
        ("--threads", "1.5", "integer >= 1"),
        ("--max-errors", "-1", "integer >= 0"),
        ("--show", "-3", "integer >= 0"),
    ],
)
def test_eval_settings_are_refused_before_any_call(files, capsys, flag, value, says) -> None:
    err = _usage_error(capsys, ["eval", str(files["art"]), str(files["train"]), flag, value])
    assert err.startswith("oobleck eval: error: argument " + flag) and says in err


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "{art}", "--port", "99999"],
        ["serve", "{art}", "--conn-timeout", "nan"],
        ["serve", "{art}", "--max-inflight", "0"],
        ["serve", "{art}", "--conn-timeout", "-1"],
        ["serve", "{art}", "--conn-timeout", "inf"],
        ["serve", "{art}", "--drain-timeout", "nan"],
        ["serve", "{art}", "--max-batch", "0"],
        ["run", "{art}", '{{"question": "x"}}', "--temperature", "NaN"],
        ["compile", "question -> answer", "--train", "{train}", "--max-lm-calls", "-5", "--dry-run"],
        ["inspect", "{art}", "--top", "-1"],
    ],
)
def test_other_settings_are_refused_before_any_call(files, capsys, argv) -> None:
    args = [a.format(art=files["art"], train=files["train"]) for a in argv]
    err = _usage_error(capsys, args)
    assert err.startswith(f"oobleck {args[0]}: error: argument ")


@pytest.mark.parametrize(
    "optimizer, option, says",
    [
        ("bootstrap", "max_bootstrapped_demos=abc", "expected int"),
        ("bootstrap", "max_bootstrapped_demos=1.5", "expected int"),
        ("bootstrap", "max_bootstrapped_demos=-1", ">= 0"),
        ("bootstrap", "max_errors=NaN", "finite"),
        ("bootstrap", "metric_threshold=Infinity", "finite"),
        ("bootstrap", "teacher=x", "Python object"),
        ("bootstrap", "bogus=1", "unexpected keyword"),
        ("random_search", "num_threads=abc", "expected int"),
        ("random_search", "num_threads=0", "num_threads must be"),
        ("random_search", "max_errors=-1", ">= 0"),
        ("random_search", "val_fraction=2", "val_fraction"),
        ("random_search", "racing=maybe", "expected bool"),
        ("instructions", "formats=chat", "expected Sequence[str]"),
        ("instructions", "prompt_lm=x", "Python object"),
        ("labeled", "k=[1]", "expected int"),
    ],
)
def test_optimizer_options_are_checked_before_any_call(files, capsys, optimizer, option, says) -> None:
    calls: list[object] = []
    with context(lm=FakeLM(lambda r: calls.append(r) or echo(r))):
        code = main(
            ["compile", "question -> answer", "--train", str(files["train"]), "--optimizer", optimizer]
            + ["--metric", "exact_match", "-O", option, "-o", str(files["dir"] / "out.json")]
        )
    err = capsys.readouterr().err
    assert code == 2 and calls == [] and not (files["dir"] / "out.json").exists(), err
    assert err.startswith("oobleck compile: error: ") and err.count("\n") == 1 and says in err, err
    assert "Traceback" not in err and "TypeError:" not in err and "ValueError:" not in err


def test_good_options_still_work(files, capsys) -> None:
    with context(lm=FakeLM(echo)):
        code = main(
            ["compile", "question -> answer", "--train", str(files["train"]), "--optimizer", "random_search"]
            + ["--metric", "exact_match", "-O", "num_threads=2", "-O", "num_candidates=2", "-O", "max_errors=null"]
            + ["--temperature", "0.7", "-o", str(files["dir"] / "out.json")]
        )
    assert code == 0 and (files["dir"] / "out.json").exists(), capsys.readouterr().err


# ---- run --jsonl - answers as the lines come ----

_SERVER = """
import sys
sys.path.insert(0, {fixtures!r})
from scripted_lms import echo
from oobleck import FakeLM, context
from oobleck.cli import main
with context(lm=FakeLM(echo)):
    sys.exit(main(["run", {art!r}, "--jsonl", "-"]))
"""


def _read_line(stream, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no answer within {timeout} s (read so far: {buf!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"stdout closed early (read so far: {buf!r})")
        buf += chunk
    return buf.decode("utf-8")


def test_run_jsonl_stdin_answers_each_line_before_the_next_arrives(files) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(fixtures=str(FIXTURES), art=str(files["art"]))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for question in ("first?", "second?"):
            proc.stdin.write((json.dumps({"question": question}) + "\n").encode())
            proc.stdin.flush()  # stdin stays open: the answer must come anyway
            assert json.loads(_read_line(proc.stdout, 60)) == {"answer": question}
        proc.stdin.write(b"not json\n")
        proc.stdin.flush()
        assert "not a JSON object" in json.loads(_read_line(proc.stdout, 60))["error"]["message"]
        proc.stdin.write(b'{"question": "after a bad line"}\n')
        proc.stdin.close()
        assert json.loads(_read_line(proc.stdout, 60)) == {"answer": "after a bad line"}
        assert proc.wait(60) == 1  # one line failed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close() if proc.stderr else None


def test_run_jsonl_from_empty_stdin_is_an_error(files, capsys, monkeypatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with context(lm=FakeLM(echo)):
        code = main(["run", str(files["art"]), "--jsonl", "-"])
    assert code == 1 and "has no rows" in capsys.readouterr().err
