"""LabeledFewShot: give every predictor ``k`` labelled training rows as demos. No LM calls."""

from __future__ import annotations

import random
from typing import Any

from oobleck._estimate import CostEstimate
from oobleck.example import Example
from oobleck.module import Module
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.optimize._bootstrap import labelled_for

__all__ = ["LabeledFewShot"]


class LabeledFewShot(Optimizer):
    """Demos drawn from the trainset as they are (inputs and labels), without running anything.

    Args:
        k: demos per predictor (0 clears them).
        sample: draw ``k`` rows at random (seeded); False takes the first ``k`` in order.
        max_lm_calls: accepted for uniformity; this optimizer makes no LM calls.
        max_tokens: the same.

    Example:
        >>> from oobleck import Example, Predict
        >>> train = [Example(q=str(i), a=str(i * 2)).with_inputs("q") for i in range(10)]
        >>> compiled = LabeledFewShot(k=3).compile(Predict("q -> a"), trainset=train, seed=1)
        >>> len(compiled.predictors()[0].demos), compiled.provenance["optimizer"]
        (3, 'LabeledFewShot')
    """

    cli_name = "labeled"

    def __init__(
        self, *, k: int = 16, sample: bool = True, max_lm_calls: int | None = None, max_tokens: int | None = None
    ) -> None:
        super().__init__(max_lm_calls=max_lm_calls, max_tokens=max_tokens)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.k = k
        self.sample = sample

    def _settings(self) -> dict[str, Any]:
        return {"k": self.k, "sample": self.sample}

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        return CostEstimate(program_runs=0, lm_calls=0, min_lm_calls=0, prompt_tokens=0, breakdown={})

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        compiled = program.copy()
        rng = random.Random(run.seed)
        for _, predictor in compiled.named_predictors():
            fitting = labelled_for(predictor, trainset)  # rows holding this step's outputs
            n = min(self.k, len(fitting))
            rows = rng.sample(fitting, n) if self.sample else fitting[:n]
            predictor.demos = list(rows)
        run.scores = {}
        return compiled
