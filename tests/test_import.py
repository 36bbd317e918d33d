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
