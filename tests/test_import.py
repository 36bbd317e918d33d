"""`import oobleck` stays light: no LM SDK, ML framework or optional tool is imported."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["openai", "httpx", "httpx2", "transformers", "torch", "peft", "xllamacpp", "numpy", "diskcache", "tqdm", "bm25s", "qdrant_client"]


def test_import_is_light():
    code = f"import json, sys, oobleck; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_names_resolve():
    import oobleck

    for name in oobleck.__all__:
        assert getattr(oobleck, name) is not None
    assert oobleck.__all__ == sorted(oobleck.__all__, key=lambda s: (s.startswith("_"), s)) or oobleck.__all__ == sorted(oobleck.__all__)


def test_evaluate_is_public_and_callable_whatever_was_imported_first():
    import oobleck

    assert "evaluate" in oobleck.__all__
    run = (
        "from oobleck import Example, FakeLM, Predict\n"
        "from oobleck.metrics import exact_match\n"
        "rows = [Example(q='1', a='x').with_inputs('q')]\n"
        "prog = Predict('q -> a', lm=FakeLM([{'a': 'x'}], cycle=True))\n"
        "print(oobleck.evaluate(prog, rows, exact_match, progress=False).score)\n"
    )
    for first in ("import oobleck", "import oobleck.optimize, oobleck", "import oobleck.evaluate, oobleck",
                  "from oobleck.evaluate import EvaluationResult; import oobleck"):
        out = subprocess.run([sys.executable, "-c", f"{first}\n{run}"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.strip() == "100.0", (first, out.stderr[-500:])
    from oobleck.evaluate import EvaluationResult, evaluate

    assert callable(oobleck.evaluate) and oobleck.evaluate.EvaluationResult is EvaluationResult
    assert callable(evaluate)
