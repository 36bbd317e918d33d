"""VectorIndex given an embedder that turns some query into NaN: a clear error, not a numpy crash."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from oobleck import ConfigError
from oobleck.retrieve import VectorIndex
from oobleck.retrieve.embedders import HashingEmbedder


class _NormalisingEmbedder(HashingEmbedder):
    """Length-normalises [len(text), has 'cat']: the empty text is 0/0, NaN."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.array([[len(t), 1.0 if "cat" in t else 0.0] for t in texts], dtype=np.float32)
        with np.errstate(invalid="ignore"):
            return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("queries", [["", "cat"], [""], ["cat", ""]])
def test_a_nan_query_vector_is_a_config_error_naming_the_query(queries: list[str]) -> None:
    index = VectorIndex(["cat", "dog"], embedder=_NormalisingEmbedder(), show_progress=False)
    with pytest.raises(ConfigError, match="NaN or infinite values for the query ''"):
        index.search(queries, k=2)


def test_finite_queries_still_rank() -> None:
    index = VectorIndex(["cat", "dog"], embedder=_NormalisingEmbedder(), show_progress=False)
    assert [p.text for p in index.search(["cat"], k=2)[0]] == ["cat", "dog"]


@pytest.mark.parametrize(
    "settings",
    [
        {"weights": [float("nan"), 1.0]},
        {"weights": [float("inf"), 1.0]},
        {"rrf_k": float("nan")},
        {"rrf_k": float("inf")},
    ],
)
def test_hybrid_refuses_non_finite_fusion_settings(settings: dict[str, object]) -> None:
    from oobleck.retrieve import BM25Index, HybridRetriever

    docs = ["the cat sat", "dogs bark"]
    parts = [BM25Index(docs, show_progress=False), VectorIndex(docs, show_progress=False)]
    with pytest.raises(ConfigError, match="weights|rrf_k"):
        HybridRetriever(parts, **settings)  # type: ignore[arg-type]


def test_retrieve_exclude_given_one_id_as_a_string_skips_that_id_not_its_characters() -> None:
    from oobleck.retrieve import Retrieve

    docs = [{"id": "12", "text": "cat one"}, {"id": "1", "text": "cat two"}, {"id": "2", "text": "cat three"}]
    retrieve = Retrieve(VectorIndex(docs, show_progress=False), k=3)
    found = retrieve(query="cat", exclude="12").passages
    assert sorted(p.id for p in found) == ["1", "2"]
