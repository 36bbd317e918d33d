"""Retrieval: embedders (and, later, vector and BM25 indexes)."""

from __future__ import annotations

from oobleck.retrieve.embedders import (
    Embedder,
    HashingEmbedder,
    TransformersEmbedder,
    embedder_from_config,
)

__all__ = ["Embedder", "HashingEmbedder", "TransformersEmbedder", "embedder_from_config"]
