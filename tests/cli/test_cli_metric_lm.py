"""The CLI's user metrics (--metric file.py:fn, module:fn), --lm provider strings and `python -m oobleck`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_lms import echo

from oobleck import FakeLM, Predict, context
from oobleck.cli import main
from oobleck.cli._commands import _lm_from
from oobleck.lm.openai import OpenAILM

ROOT = Path(__file__).parents[2]

METRICS_PY = """
def first_letter(example, prediction, trace=None):
    return example.answer[:1] == prediction.answer[:1]

def half(example, prediction, trace=None):
    return 0.5

class Strict:
    def __call__(self, example, prediction, trace=None):
        return example.answer == prediction.answer

NOT_CALLABLE = 42

def two_args(example, prediction):  # as the help once said; every row would fail, scored 0
    return True

def no_args():
    return 1
"""


@pytest.fixture
def task(tmp_path) -> Path:
    Predict("question -> answer").save(tmp_path / "qa.json")
    rows = [
        {"question": "abc", "answer": "abc"},
        {"question": "xyz", "answer": "xyq"},
        {"question": "k", "answer": "z"},
    ]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "my_metrics.py").write_text(METRICS_PY)
    return tmp_path


def run(capsys, *argv):
    lm = FakeLM(echo)
    with context(lm=lm):
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err, lm


def score_of(out: str) -> float:
    return json.loads(out)["score"]


@pytest.mark.parametrize(("fn", "expected"), [("first_letter", 200 / 3), ("half", 50.0), ("Strict", 100 / 3)])
def test_eval_with_a_metric_from_a_file(task, capsys, fn, expected):
    code, out, err, _ = run(
        capsys,
        "eval",
        task / "qa.json",
        task / "dev.jsonl",
        "--metric",
        f"{task / 'my_metrics.py'}:{fn}",
        "--json",
        "-q",
    )
    assert code == 0, err
    assert score_of(out) == pytest.approx(expected)


def test_eval_with_a_metric_from_a_module(task, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(task))
    monkeypatch.delitem(sys.modules, "my_metrics", raising=False)
    code, out, err, _ = run(
        capsys, "eval", task / "qa.json", task / "dev.jsonl", "--metric", "my_metrics:first_letter", "--json", "-q"
    )
    assert code == 0, err
    assert score_of(out) == pytest.approx(200 / 3)


def test_compile_with_a_metric_from_a_file(task, capsys):
    code, out, err, lm = run(
        capsys,
        "compile",
        "question -> answer",
        "--train",
        task / "dev.jsonl",
        "--optimizer",
        "bootstrap",
        "--metric",
        f"{task / 'my_metrics.py'}:first_letter",
        "-o",
        task / "out.json",
    )
    assert code == 0, err
    assert lm.requests and (task / "out.json").is_file()


@pytest.mark.parametrize(
    ("metric", "says"),
    [
        ("{d}/nothere.py:fn", "no such file"),
        ("{d}/my_metrics.py:nope", "has no attribute 'nope'"),
        ("{d}/my_metrics.py:NOT_CALLABLE", "expected a function"),
        ("no_such_package_xyz:fn", "cannot import 'no_such_package_xyz'"),
        ("accuracy", "unknown metric 'accuracy'"),
        ("{d}/my_metrics.py:", "expected file.py:fn"),
        ("{d}/my_metrics.py:two_args", "def two_args(example, prediction, trace=None)"),
        ("{d}/my_metrics.py:no_args", "cannot take those three arguments"),
    ],
)
@pytest.mark.parametrize("command", ["eval", "compile"])
def test_a_metric_that_cannot_serve_is_a_usage_error_before_any_lm_work(task, capsys, metric, says, command):
    spec = metric.format(d=task)
    if command == "eval":
        argv = ["eval", task / "qa.json", task / "dev.jsonl", "--metric", spec]
    else:
        argv = ["compile", "question -> answer", "--train", task / "dev.jsonl", "--metric", spec, "-o", task / "o.json"]
    code, out, err, lm = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in err
    assert lm.requests == [], "the LM was called before the metric was checked"
    assert not (task / "o.json").exists()


def test_lm_takes_provider_strings(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k-anthropic-123")
    lm = _lm_from("anthropic/claude-x", None, 0.0)
    assert isinstance(lm, OpenAILM) and lm.identity["endpoint"] == "https://api.anthropic.com/v1/"
    assert lm.settings == {"temperature": 0.0}
    lm = _lm_from("ollama/llama3.2", "http://127.0.0.1:9/v1", None)
    assert isinstance(lm, OpenAILM) and lm.identity["endpoint"].startswith("http://127.0.0.1:9/v1")
    assert lm.identity["model"] == "llama3.2"


def test_lm_without_its_key_names_the_variable(task, capsys, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, _, err, _ = run(capsys, "run", task / "qa.json", '{"question": "x"}', "--lm", "anthropic/claude-x")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "ANTHROPIC_API_KEY" in lines[0]


def test_lm_spec_errors_say_what_is_understood(task, capsys):
    code, _, err, _ = run(capsys, "run", task / "qa.json", '{"question": "x"}', "--lm", "mistral/large")
    assert code == 1 and "--lm 'mistral/large' is not understood" in err and "anthropic" in err
    code, _, err, _ = run(
        capsys, "run", task / "qa.json", '{"question": "x"}', "--lm", "local", "--base-url", "http://h:1/v1"
    )
    assert code == 1 and "--base-url is for a server" in err


def test_python_dash_m_oobleck_is_the_cli(task):
    help_text = subprocess.run(
        [sys.executable, "-m", "oobleck", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert help_text.startswith("usage: oobleck") and "anthropic/MODEL" in help_text
    shown = subprocess.run(
        [sys.executable, "-m", "oobleck", "inspect", str(task / "qa.json"), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["predictors"]
    bad = subprocess.run([sys.executable, "-m", "oobleck", "frobnicate"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "oobleck" in bad.stderr
