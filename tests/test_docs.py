"""The README's Python blocks and examples/*.py run as written."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_readme_blocks_that_need_no_model_run_in_the_fast_suite(tmp_path, monkeypatch, capsys):
    """The README blocks on FakeLM run on every fast run, not only with the real model."""
    blocks = [b for b in python_blocks(ROOT / "README.md") if "LocalLM" not in b and "OpenAILM" not in b]
    assert blocks, "the README's FakeLM block (Watching) is expected here"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert " tokens" in out  # the Watching block's callback total


@pytest.mark.slow
def test_readme_quickstart_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "the README should show a quickstart"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "positive" in out or "negative" in out
    assert "int" in out  # the typed ChainOfThought answer


@pytest.mark.slow
def test_examples_run(monkeypatch, tmp_path):
    scripts = sorted((ROOT / "examples").glob("*.py"))
    assert scripts
    for script in scripts:
        monkeypatch.setattr(
            sys,
            "argv",
            [
                str(script),
                "--quick",
                "--out",
                str(tmp_path / (script.stem + ".json")),
                "--cache",
                str(tmp_path / "cache"),
            ],
        )
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
        assert done.value.code == 0
        assert (tmp_path / (script.stem + ".json")).exists()
