"""KNN: compile a program into a :class:`~oobleck.modules.knn.KNNFewShot` program.

No LM calls, at compile time or at inference: demos are picked per input by embedding
similarity from the trainset, whose embeddings are computed once here.
"""

from __future__ import annotations

from typing import Any

from oobleck._estimate import CostEstimate
from oobleck.example import Example
from oobleck.module import Module
from oobleck.modules.knn import KNNFewShot
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.retrieve.embedders import Embedder

__all__ = ["KNN"]


class KNN(Optimizer):
    """Demos chosen per input: the ``k`` trainset rows nearest to it.

    Args:
        k: demos per call.
        embedder: an Embedder (default: HashingEmbedder()).
        input_fields: the input fields compared (default: each row's inputs).

    Example:
        >>> from oobleck import Example, Predict
        >>> rows = [Example(text=t, label="x").with_inputs("text") for t in ("a b", "c d", "a c")]
        >>> knn = KNN(k=2).compile(Predict("text -> label"), trainset=rows)
        >>> type(knn).__name__, knn.provenance["optimizer"]
        ('KNNFewShot', 'KNN')
    """

    cli_name = "knn"

    def __init__(self, *, k: int = 3, embedder: Embedder | None = None, input_fields: list[str] | None = None) -> None:
        super().__init__()
        self.k = k
        self.embedder = embedder
        self.input_fields = input_fields

    def _settings(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "embedder": self.embedder.config() if self.embedder is not None else {"type": "hashing", "default": True},
            "input_fields": self.input_fields,
        }

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        return CostEstimate(program_runs=0, lm_calls=0, min_lm_calls=0, prompt_tokens=0, breakdown={})

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        run.scores = {"pool_size": len(trainset)}
        return KNNFewShot(program, trainset=trainset, k=self.k, embedder=self.embedder, input_fields=self.input_fields)
