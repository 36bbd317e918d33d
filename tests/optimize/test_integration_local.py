"""BootstrapFewShot end to end with the real embedded model (SmolLM2-135M, JSON grammar)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _opt_helpers import sentiment_rows

from oobleck import Cache, CachedLM, JSONAdapter, Predict
from oobleck.evaluation import evaluate
from oobleck.metrics import exact_match
from oobleck.optimize import BootstrapFewShot
from oobleck.optimize._identity import program_fingerprint

SIGNATURE = "sentence -> label: Literal['positive', 'negative']"


@pytest.mark.slow
def test_bootstrap_with_the_local_model_is_reproducible_from_the_cache(local_lm: object, tmp_path: Path) -> None:
    lm = CachedLM(local_lm, cache=Cache(tmp_path / "cache"))  # type: ignore[arg-type]
    rows = sentiment_rows()
    train, dev = rows[:8], rows[8:]
    opt = BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=3, max_lm_calls=8)

    compiled = opt.compile(Predict(SIGNATURE, adapter=JSONAdapter(), lm=lm), trainset=train, seed=0)
    prov = compiled.provenance
    assert prov["lm_calls"] <= 8
    demos = compiled.predictors()[0].demos
    booted = prov["scores"]["bootstrapped_rows"]
    assert len(demos) == max(3, len(booted))
    for row, demo in zip(booted, demos):
        assert demo["label"] == train[row].label  # only traces that passed the metric

    result = evaluate(compiled, dev, exact_match, num_threads=4, progress=False, max_errors=0)
    assert result.errors == 0 and len(result.rows) == 4

    again = opt.compile(Predict(SIGNATURE, adapter=JSONAdapter(), lm=lm), trainset=train, seed=0)
    assert program_fingerprint(again) == program_fingerprint(compiled)
    assert again.compile_usage.calls == 0 and again.compile_usage.cache_hits == prov["lm_calls"]
    assert again.provenance == prov  # the same artifact, whether calls were fresh or cached
