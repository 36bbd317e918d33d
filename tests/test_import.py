"""`import oobleck` stays light: no LM SDK, ML framework or optional tool is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "openai",
    "httpx",
    "httpx2",
    "transformers",
    "torch",
    "peft",
    "xllamacpp",
    "numpy",
    "diskcache",
    "tqdm",
    "bm25s",
    "qdrant_client",
]


def test_import_is_light():
    code = f"import json, sys, oobleck; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_names_resolve():
    import oobleck

    for name in oobleck.__all__:
        assert getattr(oobleck, name) is not None
    assert oobleck.__all__ == sorted(
        oobleck.__all__, key=lambda s: (s.startswith("_"), s)
    ) or oobleck.__all__ == sorted(oobleck.__all__)


def test_public_namespace_is_all_and_agrees_with_the_lazy_table():
    """Like httpx's test_exported_members: what the package offers is exactly ``__all__``."""
    import __future__

    import ast
    import inspect
    from pathlib import Path

    import oobleck

    eager = {
        n
        for n, v in vars(oobleck).items()
        if not n.startswith("_") and not inspect.ismodule(v) and not isinstance(v, __future__._Feature)
    }
    lazy = set(oobleck._LAZY)
    assert len(oobleck.__all__) == len(set(oobleck.__all__))
    assert not eager & lazy
    assert eager | lazy | {"__version__"} == set(oobleck.__all__)
    assert set(dir(oobleck)) >= set(oobleck.__all__)
    # The TYPE_CHECKING imports (what type checkers see) name the same lazy names, each from
    # the module _LAZY resolves it from (or one of its submodules).
    tree = ast.parse(Path(oobleck.__file__).read_text(encoding="utf-8"))
    checked: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module is not None
                for alias in imp.names:
                    checked[alias.asname or alias.name] = imp.module
    assert set(checked) == lazy
    for name, module in checked.items():
        assert module == oobleck._LAZY[name] or module.startswith(oobleck._LAZY[name] + "."), name


def test_evaluate_is_the_function_whatever_was_imported_first():
    import oobleck
    from oobleck.evaluation import EvaluationResult, evaluate

    assert "evaluate" in oobleck.__all__
    run = (
        "from oobleck import Example, FakeLM, Predict\n"
        "from oobleck.metrics import exact_match\n"
        "rows = [Example(q='1', a='x').with_inputs('q')]\n"
        "prog = Predict('q -> a', lm=FakeLM([{'a': 'x'}], cycle=True))\n"
        "print(oobleck.evaluate(prog, rows, exact_match, progress=False).score)\n"
    )
    for first in (
        "import oobleck",
        "import oobleck.optimize, oobleck",
        "import oobleck.evaluation, oobleck",
        "from oobleck.evaluation import EvaluationResult; import oobleck",
    ):
        out = subprocess.run([sys.executable, "-c", f"{first}\n{run}"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == "100.0", (first, out.stderr[-500:])
    assert oobleck.evaluate is evaluate and oobleck.EvaluationResult is EvaluationResult


def test_lm_lazy_backends_are_one_table():
    """oobleck.lm resolves each backend from its one table entry; TYPE_CHECKING mirrors it."""
    import ast
    from pathlib import Path

    import oobleck.lm

    tree = ast.parse(Path(oobleck.lm.__file__).read_text(encoding="utf-8"))
    checked = {
        alias.name: imp.module
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for imp in node.body
        if isinstance(imp, ast.ImportFrom)
        for alias in imp.names
    }
    assert checked == oobleck.lm._LAZY
    assert set(oobleck.lm._LAZY) <= set(oobleck.lm.__all__) <= set(dir(oobleck.lm))
    assert oobleck.lm.OpenAILM.__module__ == "oobleck.lm.openai"
    with pytest.raises(AttributeError, match="NoSuchLM"):
        oobleck.lm.NoSuchLM  # noqa: B018
