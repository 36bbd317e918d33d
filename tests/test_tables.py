"""The published benchmark figures agree with the committed results (benchmarks/tables.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_tables", ROOT / "benchmarks" / "tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_published_figures_match_their_json(tables: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """`python benchmarks/tables.py --check`: every marked table and figure is what its JSON says."""
    rc = tables.main(["--check"])
    assert rc == 0, "run `python benchmarks/tables.py`:\n" + capsys.readouterr().out


def test_every_marker_names_a_renderer_and_docs_have_markers(tables: ModuleType) -> None:
    keys = [m.group("key") for path in tables.DOCS for m in tables.MARK.finditer(path.read_text(encoding="utf-8"))]
    assert "overhead.headline" in keys and "compile_instructions" in keys and "hotpotqa.retrievers" in keys
    for key in keys:
        assert key.startswith("v:") or key.partition("@")[0] in tables.RENDERERS, key


def test_check_fails_on_a_drifted_figure(tables: ModuleType) -> None:
    """A hand-edited number inside a marked region is rewritten from the JSON (so --check fails)."""
    text = "x <!-- fig:v:overhead:per_call.oobleck.median_us.median -->28<!-- /fig --> y"
    value = json.loads((ROOT / "benchmarks/results/overhead.json").read_text())["per_call"]["oobleck"]["median_us"]
    assert (
        tables.rewrite(text)
        == f"x <!-- fig:v:overhead:per_call.oobleck.median_us.median -->{value['median']}<!-- /fig --> y"
    )


def test_provenance_says_not_recorded_for_old_results_and_reads_the_run_record(tables: ModuleType) -> None:
    old = {
        "_file": "results/x.json",
        "machine": {"oobleck_commit": "abc1234", "date": "d", "loadavg_at_end": [1.0, 2.0, 3.0]},
    }
    line = tables.provenance(old, dspy=True)
    assert "command not recorded" in line
    assert "load average at start not recorded" in line
    assert "DSPy in the same process run: not recorded" in line
    new = {
        **old,
        "run": {
            "git_at_start": {"commit": "f" * 40, "dirty": True},
            "git_at_write": {"commit": "f" * 40, "dirty": True},
            "command": "python benchmarks/x.py --n 3",
            "loadavg_at_start": [0.5, 0.4, 0.3],
            "loadavg_at_end": [1.5, 1.0, 0.5],
            "dspy_same_run": True,
        },
    }
    line = tables.provenance(new, dspy=True)
    assert "`fffffff` (dirty tree)" in line
    assert "`python benchmarks/x.py --n 3`" in line
    assert "DSPy in the same process run: yes" in line
    assert "at start 0.5/0.4/0.3" in line
