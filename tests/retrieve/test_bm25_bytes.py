"""A BM25 index saved by two processes with different string hashing is the same bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bm25s")

SCRIPT = """
import hashlib, sys
from pathlib import Path
from oobleck.retrieve import save_index
from oobleck.retrieve.bm25 import BM25Index
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
docs = [f"{a} {b} report number {i}" for i, (a, b) in enumerate(zip(words, reversed(words)))]
folder = Path(sys.argv[1])
save_index(BM25Index(docs, show_progress=False), folder)
h = hashlib.sha256()
for f in sorted(folder.iterdir()):
    h.update(f.name.encode()); h.update(f.read_bytes())
print(h.hexdigest())
"""


def _saved_digest(tmp_path: Path, hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / f"idx-{hash_seed}")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_vocabulary_order_does_not_follow_string_hashing(tmp_path: Path) -> None:
    digests = {_saved_digest(tmp_path, seed) for seed in ("0", "1", "2")}
    assert len(digests) == 1, digests
    assert hashlib.sha256(b"").hexdigest() not in digests
