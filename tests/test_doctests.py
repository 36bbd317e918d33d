"""Every example in oobleck's docstrings runs and prints what it shows.

The modules are found by reading their source (an example not marked ``doctest: +SKIP``), so
collecting this file imports nothing; a module is imported only by its own test, and one
whose optional extra is not installed is skipped, naming the missing package.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The SDKs the extras in pyproject.toml install; any other missing import is a failure.
OPTIONAL = {
    "bm25s",
    "gguf",
    "httpx",
    "openai",
    "opentelemetry",
    "optuna",
    "peft",
    "qdrant_client",
    "safetensors",
    "torch",
    "transformers",
    "xllamacpp",
}


def _runnable(source: str) -> bool:
    """Whether a docstring in ``source`` has an example that is not skipped (read with ast)."""
    parser = doctest.DocTestParser()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node)
            if docstring and any(not e.options.get(doctest.SKIP) for e in parser.get_examples(docstring)):
                return True
    return False


def _modules_with_doctests() -> list[str]:
    names = []
    for path in sorted((ROOT / "oobleck").rglob("*.py")):
        if _runnable(path.read_text(encoding="utf-8")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_doctests()


def test_the_scan_finds_the_documented_modules() -> None:
    # A broken scan would quietly run nothing.
    assert len(MODULES) >= 40
    assert {"oobleck.predict", "oobleck.optimize.reflective", "oobleck.metrics"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name} (an optional extra)")
        raise
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    out = io.StringIO()
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name} has an example not marked SKIP, but none ran"
    assert result.failed == 0, out.getvalue()
