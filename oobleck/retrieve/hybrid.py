"""HybridRetriever: reciprocal rank fusion of several retrievers (e.g. BM25 and vectors).

Each retriever returns its top ``depth`` passages for a query; a passage's fused score is the
sum over retrievers of ``weight / (rrf_k + rank)`` (rank from 1; Cormack et al. 2009). Scores
of different retrievers are never compared, only ranks, so no calibration is needed.
Passages are matched by id: the retrievers must index the same corpus ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oobleck.errors import ConfigError
from oobleck.retrieve._state import dump_retriever
from oobleck.retrieve.passage import Passage, Retriever, check_k, check_queries

if TYPE_CHECKING:
    from oobleck.artifact import SideFiles

__all__ = ["HybridRetriever"]


class HybridRetriever:
    """Fuse the rankings of several retrievers by reciprocal rank fusion.

    Args:
        retrievers: two or more retrievers over the same corpus ids.
        weights: one weight per retriever (default: all 1.0).
        rrf_k: the RRF constant (60 in the original paper); larger flattens rank differences.
        depth: how many passages to take from each retriever (default: ``max(4 * k, 20)``).

    Raises:
        ConfigError: fewer than two retrievers, or weights that do not match.

    Example:
        >>> from oobleck.retrieve import BM25Index, VectorIndex
        >>> docs = ["the cat sat on the mat", "stock prices fell", "cats like mats"]
        >>> hybrid = HybridRetriever([BM25Index(docs, show_progress=False), VectorIndex(docs, show_progress=False)])
        >>> hybrid.search(["cat mat"], k=1)[0][0].text
        'the cat sat on the mat'
    """

    kind = "hybrid"

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        *,
        weights: Sequence[float] | None = None,
        rrf_k: float = 60.0,
        depth: int | None = None,
    ) -> None:
        self.retrievers = list(retrievers)
        if len(self.retrievers) < 2:
            raise ConfigError(f"HybridRetriever fuses two or more retrievers, got {len(self.retrievers)}")
        for r in self.retrievers:
            if not isinstance(r, Retriever):
                raise ConfigError(f"{r!r} is not a Retriever (it needs search(queries, k=...) and config())")
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * len(self.retrievers)
        if len(self.weights) != len(self.retrievers) or not all(0 <= w < math.inf for w in self.weights):  # NaN too
            raise ConfigError(f"weights must be one non-negative number per retriever, got {list(weights or [])}")
        if not 0 <= rrf_k < math.inf:
            raise ConfigError(f"rrf_k must be a finite number >= 0, got {rrf_k}")
        self.rrf_k = float(rrf_k)
        self.depth = check_k(depth) if depth is not None else None

    def search(self, queries: Sequence[str], *, k: int) -> list[list[Passage]]:
        """For each query, the ``k`` passages with the best fused score (ties: first seen)."""
        qs = check_queries(queries)
        k = check_k(k)
        depth = self.depth or max(4 * k, 20)
        rankings = [r.search(qs, k=depth) for r in self.retrievers]
        out: list[list[Passage]] = []
        for qi in range(len(qs)):
            fused: dict[str, float] = {}
            first: dict[str, Passage] = {}
            for weight, ranking in zip(self.weights, rankings):
                for rank, p in enumerate(ranking[qi], start=1):
                    fused[p.id] = fused.get(p.id, 0.0) + weight / (self.rrf_k + rank)
                    first.setdefault(p.id, p)
            order = sorted(fused, key=lambda pid: -fused[pid])  # stable: first-seen order breaks ties
            out.append([first[pid].model_copy(update={"score": fused[pid]}) for pid in order[:k]])
        return out

    def config(self) -> dict[str, Any]:
        """Type, RRF settings and each retriever's config."""
        return {
            "type": self.kind,
            "rrf_k": self.rrf_k,
            "depth": self.depth,
            "weights": self.weights,
            "retrievers": [r.config() for r in self.retrievers],
        }

    def dump(self, files: SideFiles) -> dict[str, Any]:
        """The config with each part's saved state."""
        return {**self.config(), "retrievers": [dump_retriever(r, files) for r in self.retrievers]}

    @classmethod
    def restore(cls, state: Mapping[str, Any], parts: Sequence[Retriever]) -> HybridRetriever:
        """Rebuild from :meth:`dump`, given its parts already rebuilt.

        :func:`~oobleck.retrieve.store.restore_retriever` restores a hybrid's parts, then calls this.
        """
        return cls(
            list(parts),
            weights=state.get("weights"),
            rrf_k=float(state.get("rrf_k", 60.0)),
            depth=state.get("depth"),
        )

    def __repr__(self) -> str:
        return f"HybridRetriever({self.retrievers!r}, rrf_k={self.rrf_k})"
