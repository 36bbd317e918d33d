"""Instruction search end to end on the real embedded model (SmolLM2-135M as task and prompt LM)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _opt_helpers import sentiment_rows

from oobleck import Cache, CachedLM, JSONAdapter, Predict
from oobleck.metrics import exact_match
from oobleck.optimize import InstructionSearch
from oobleck.optimize._identity import program_fingerprint

SIGNATURE = "sentence -> label: Literal['positive', 'negative']"
ROOT = Path(__file__).resolve().parents[2]

RUN_IN_FRESH_PROCESS = """
import json, sys
from oobleck import LocalLM
from oobleck.artifact import load
lm = LocalLM(temperature=0.0, max_tokens=96, n_parallel=1)
art = load(sys.argv[1], lm=lm)
out = [art(sentence=s).label for s in json.loads(sys.argv[2])]
lm.close()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_short_instruction_search_saved_and_rerun_in_a_fresh_process(local_lm: object, tmp_path: Path) -> None:
    lm = CachedLM(local_lm, cache=Cache(tmp_path / "cache"))  # type: ignore[arg-type]
    rows = sentiment_rows()
    train, val = rows[:4], rows[4:10]
    opt = InstructionSearch(exact_match, breadth=2, depth=1, n_demos=1, formats=["one_line"], max_lm_calls=60)
    compiled = opt.compile(Predict(SIGNATURE, adapter=JSONAdapter(), lm=lm), trainset=train, valset=val, seed=0)

    prov = compiled.provenance
    assert prov["lm_calls"] <= 60
    cands = prov["scores"]["candidates"]
    assert cands[0]["kind"] == "start" and cands[0]["score"] is not None
    assert any(c["kind"] == "format" for c in cands)
    # the proposer (the same model) was asked; what it wrote is recorded, used or not
    assert prov["notes"]["proposals"] and prov["notes"]["data_summary"] is not None
    assert prov["scores"]["verdict"] is not None

    # same seed and cache -> the same artifact, byte for byte
    again = opt.compile(Predict(SIGNATURE, adapter=JSONAdapter(), lm=lm), trainset=train, valset=val, seed=0)
    assert program_fingerprint(again) == program_fingerprint(compiled)
    compiled.save(tmp_path / "a.json")
    again.save(tmp_path / "b.json")
    # Byte for byte but one number: racing's calls saved count backend calls only (a skipped row
    # that the cache would have answered saves nothing), so a rerun on a warm cache may report
    # another figure there; every other byte is the same.
    a, b = ((tmp_path / name).read_text() for name in ("a.json", "b.json"))
    assert re.sub(r'"calls_saved": \d+', "", a) == re.sub(r'"calls_saved": \d+', "", b)

    sentences = [r.sentence for r in rows[10:]]
    here = [compiled(sentence=s).label for s in sentences]
    done = subprocess.run(
        [sys.executable, "-c", RUN_IN_FRESH_PROCESS, str(tmp_path / "a.json"), json.dumps(sentences)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == here
