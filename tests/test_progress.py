"""Progress bars: drawn on a terminal (rows, score, LM calls, ETA), silent otherwise."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from oobleck import ChatAdapter, Example, FakeLM, Predict, _progress
from oobleck.evaluation import evaluate
from oobleck.metrics import exact_match


def _program() -> Predict:
    return Predict("q -> a", lm=FakeLM([{"a": "1"}, {"a": "2"}], cycle=True), adapter=ChatAdapter())


def _rows(n: int, prefix: str = "") -> list[Example]:
    return [Example(q=f"{prefix}{i}", a="1").with_inputs("q") for i in range(n)]


@pytest.fixture
def terminal(monkeypatch):
    """Pretend stderr is a terminal (pytest's capture is not one); redraw on every update."""
    monkeypatch.setattr(_progress, "on_terminal", lambda: True)
    monkeypatch.setattr(_progress, "MININTERVAL", 0)


def test_evaluate_draws_rows_score_and_calls_on_a_terminal(terminal, capsys):
    result = evaluate(_program(), _rows(4), exact_match)
    err = capsys.readouterr().err
    assert result.score == 50.0
    assert "evaluate (exact_match)" in err and "4/4" in err
    assert "score=50.0%" in err and "calls=4" in err


def test_quiet_with_progress_false_or_off_a_terminal(terminal, capsys):
    evaluate(_program(), _rows(3), exact_match, progress=False)
    assert capsys.readouterr().err == ""


def test_quiet_when_not_a_terminal(capsys):
    evaluate(_program(), _rows(3), exact_match)
    assert capsys.readouterr().err == ""


def test_bars_do_not_nest(terminal):
    with _progress.bar(5, "outer", enabled=True) as outer:
        assert outer is not None and _progress.current() is outer
        with _progress.bar(3, "inner", enabled=True) as inner:
            assert inner is None
    assert _progress.current() is None


def test_index_builds_draw_a_counter_on_a_terminal_only(terminal, capsys):
    from oobleck.retrieve import HashingEmbedder, VectorIndex

    docs = ["the cat sat", "stock prices fell", "rain in spain"]
    VectorIndex(docs, embedder=HashingEmbedder(dim=32), batch_size=2)
    err = capsys.readouterr().err
    assert "embedding corpus" in err and "/3 " in err and "doc/s" in err
    VectorIndex(docs, embedder=HashingEmbedder(dim=32), show_progress=False)
    assert capsys.readouterr().err == ""


def test_counter_is_drawn_beneath_an_open_bar_and_silent_off_a_terminal(terminal, capsys, monkeypatch):
    with (
        _progress.bar(5, "outer", enabled=True) as outer,
        _progress.counter(4, "training", enabled=True, unit="step", initial=1) as steps,
    ):
        assert outer is not None and steps is not None  # a counter counts its own units, even inside a compile
        steps.update(3)
    err = capsys.readouterr().err
    assert "training" in err and "4/4" in err
    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    with _progress.counter(4, "training", enabled=True) as steps:
        assert steps is None
    assert capsys.readouterr().err == ""


def test_piped_run_never_imports_tqdm():
    code = (
        "import json, sys, oobleck\n"
        "from oobleck.evaluation import evaluate\n"
        "from oobleck.metrics import exact_match\n"
        "p = oobleck.Predict('q -> a', lm=oobleck.FakeLM([{'a': '1'}], cycle=True))\n"
        "evaluate(p, [oobleck.Example(q='x', a='1').with_inputs('q')], exact_match)\n"
        "print(json.dumps('tqdm' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False and out.stderr == ""


def test_a_compile_draws_one_bar_with_runs_best_score_and_calls(terminal, capsys):
    from oobleck.optimize import BootstrapFewShot, RandomSearch

    train = _rows(6)
    BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=0).compile(_program(), trainset=train)
    err = capsys.readouterr().err
    assert "BootstrapFewShot" in err and "calls=" in err and "evaluate (" not in err
    RandomSearch(exact_match, num_candidates=2, max_bootstrapped_demos=1, max_labeled_demos=1).compile(
        _program(), trainset=train, valset=_rows(4, "v")
    )
    err = capsys.readouterr().err
    assert "RandomSearch" in err and "best=" in err and "evaluate (" not in err  # the inner evaluations draw none
    RandomSearch(exact_match, num_candidates=2).compile(
        _program(), trainset=train, valset=_rows(4, "v"), progress=False
    )
    assert capsys.readouterr().err == ""
