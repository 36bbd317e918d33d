"""Retrieval: embedders, indexes behind one Retriever protocol, and the Retrieve step.

- :class:`VectorIndex`: exact cosine search in numpy over an :class:`Embedder`.
- :class:`BM25Index`: lexical search through ``bm25s`` (``pip install 'oobleck[bm25]'``).
- :class:`HybridRetriever`: reciprocal rank fusion of several retrievers.
- :class:`QdrantRetriever`: a Qdrant collection, in-process or by URL (``oobleck[qdrant]``).
- :class:`Retrieve`: the program step (``Retrieve(retriever, k=3)(query=...)``).
- :func:`save_index` / :func:`load_index`: an index in a folder, side files checked by sha256.

Optional libraries (bm25s, qdrant-client, transformers) are imported only when used.
"""

from __future__ import annotations

from oobleck.retrieve.bm25 import BM25Index
from oobleck.retrieve.embedders import (
    Embedder,
    HashingEmbedder,
    TransformersEmbedder,
    embedder_from_config,
)
from oobleck.retrieve.hybrid import HybridRetriever
from oobleck.retrieve.module import Retrieve
from oobleck.retrieve.passage import Documents, Passage, Retriever, format_passages
from oobleck.retrieve.qdrant import QdrantRetriever
from oobleck.retrieve.store import load_index, save_index
from oobleck.retrieve.vector import VectorIndex

__all__ = [
    "BM25Index",
    "Documents",
    "Embedder",
    "HashingEmbedder",
    "HybridRetriever",
    "Passage",
    "QdrantRetriever",
    "Retrieve",
    "Retriever",
    "TransformersEmbedder",
    "VectorIndex",
    "embedder_from_config",
    "format_passages",
    "load_index",
    "save_index",
]
