"""Retrievers on a hand-made corpus: BM25, numpy vectors, hybrid RRF, Qdrant, saved indexes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _corpus import KNOWN, corpus, ids

from oobleck import ArtifactError, ConfigError, InputError
from oobleck.retrieve import (
    BM25Index,
    Documents,
    HashingEmbedder,
    HybridRetriever,
    Passage,
    QdrantRetriever,
    VectorIndex,
    load_index,
    save_index,
)
from oobleck.retrieve.passage import top_k
from oobleck.retrieve.store import UnboundRetrieverError


@pytest.fixture(scope="module")
def bm25() -> BM25Index:
    return BM25Index(corpus(), show_progress=False)


@pytest.fixture(scope="module")
def vectors() -> VectorIndex:
    return VectorIndex(corpus(), embedder=HashingEmbedder(dim=512), show_progress=False)


@pytest.mark.parametrize("which", ["bm25", "vectors"])
def test_known_answers_rank_first(which, request):
    index = request.getfixturevalue(which)
    results = index.search(list(KNOWN), k=3)
    assert [ids(r)[0] for r in results] == list(KNOWN.values())
    for r in results:
        assert len(r) <= 3
        assert [p.score for p in r] == sorted((p.score for p in r), reverse=True)
    first = results[0][0]
    assert first.title == "Ada Lovelace" and first.text.startswith("Ada Lovelace was")


@pytest.mark.parametrize("which", ["bm25", "vectors"])
def test_batched_search_equals_one_query_at_a_time(which, request):
    index = request.getfixturevalue(which)
    batched = index.search(list(KNOWN), k=4)
    single = [index.search([q], k=4)[0] for q in KNOWN]
    assert [ids(r) for r in batched] == [ids(r) for r in single]
    for b, s in zip(batched, single):  # a matrix product and a vector product may differ in the last bit
        assert [p.score for p in b] == pytest.approx([p.score for p in s], rel=1e-6)


def test_bm25_returns_only_documents_sharing_a_term(bm25):
    assert bm25.search(["zebra quokka"], k=5) == [[]]
    only = bm25.search(["Kathmandu"], k=5)[0]
    assert ids(only) == ["nepal"]


def test_bm25_over_a_corpus_with_no_indexable_word_says_so():
    with pytest.raises(ConfigError, match="no document has a word to index"):
        BM25Index(["a b", "of the"], show_progress=False)


def test_vector_search_is_exact(vectors):
    q = "a river in France"
    scores = vectors.vectors @ vectors.embedder.embed([q])[0]
    expect = [corpus()[i]["id"] for i in np.argsort(-scores, kind="stable")[:5]]
    assert ids(vectors.search([q], k=5)[0]) == expect


def test_top_k_breaks_ties_by_position():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]], dtype=np.float32)
    idx, vals = top_k(scores, 3)
    assert idx.tolist() == [[1, 0, 2]] and vals.tolist() == [[pytest.approx(0.9), 0.5, 0.5]]
    idx, _ = top_k(scores, 10)
    assert idx.tolist() == [[1, 0, 2, 3, 4]]


class Fixed:
    """A retriever with a fixed ranking (to check the fusion arithmetic)."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    def search(self, queries, *, k):
        return [[Passage(id=x, text=x, score=1.0) for x in self.order[:k]] for _ in queries]

    def config(self):
        return {"type": "fixed"}


def test_hybrid_is_reciprocal_rank_fusion():
    hybrid = HybridRetriever([Fixed(["a", "b", "c"]), Fixed(["c", "a", "d"])], rrf_k=60)
    got = hybrid.search(["q"], k=4)[0]
    expect = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 63}
    assert ids(got) == sorted(expect, key=lambda x: -expect[x])
    assert [p.score for p in got] == pytest.approx(sorted(expect.values(), reverse=True))
    weighted = HybridRetriever([Fixed(["a", "b"]), Fixed(["b", "a"])], weights=[1.0, 3.0])
    assert ids(weighted.search(["q"], k=2)[0]) == ["b", "a"]


def test_hybrid_over_bm25_and_vectors_finds_the_known_answers(bm25, vectors):
    hybrid = HybridRetriever([bm25, vectors])
    assert [ids(r)[0] for r in hybrid.search(list(KNOWN), k=3)] == list(KNOWN.values())


@pytest.mark.parametrize("which", ["bm25", "vectors", "hybrid"])
def test_saved_index_loads_with_identical_top_k(which, request, tmp_path, bm25, vectors):
    index = HybridRetriever([bm25, vectors]) if which == "hybrid" else request.getfixturevalue(which)
    path = save_index(index, tmp_path / "idx")
    manifest = json.loads(path.read_text())
    assert manifest["format"] == "oobleck.index" and manifest["files"]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert "Ada Lovelace was" not in path.read_text()  # the corpus is a side file, not inline
    queries = [*KNOWN, "England", "a mechanical computer"]
    loaded = load_index(tmp_path / "idx")
    assert type(loaded) is type(index)
    assert loaded.search(queries, k=5) == index.search(queries, k=5)


def test_a_changed_side_file_is_refused(tmp_path, vectors):
    save_index(vectors, tmp_path / "idx")
    victim = next(p for p in (tmp_path / "idx").iterdir() if p.name.endswith(".npy"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match"):
        load_index(tmp_path / "idx")


def test_a_file_never_chooses_the_embedder_model(tmp_path):
    from oobleck.retrieve import TransformersEmbedder

    class Custom(HashingEmbedder):
        def config(self):
            return {"type": "transformers", "model_path": "/somewhere/else", "batch_size": 8, "max_length": 64}

    index = VectorIndex(corpus(), embedder=Custom(dim=64), show_progress=False)
    save_index(index, tmp_path / "idx")
    with pytest.raises(UnboundRetrieverError, match="neither bundled with oobleck nor allowed"):
        load_index(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx", embedder=Custom(dim=64))  # the caller's choice
    assert loaded.search(["Nepal"], k=2) == index.search(["Nepal"], k=2)
    assert not isinstance(loaded.embedder, TransformersEmbedder)


def test_a_copied_index_folder_still_loads(tmp_path, bm25):
    save_index(bm25, tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert load_index(tmp_path / "b" / "index.json").search(["Thames"], k=3) == bm25.search(["Thames"], k=3)


def test_qdrant_local_mode_matches_the_numpy_index(vectors):
    qdrant = QdrantRetriever.from_corpus(corpus(), "tiny", embedder=vectors.embedder, show_progress=False)
    queries = [*KNOWN, "England", "a mechanical computer", "capital city"]
    got, expect = qdrant.search(queries, k=4), vectors.search(queries, k=4)
    # Compare the passages that score above 0 (below that, hashed vectors tie and the order is arbitrary).
    got = [[p for p in r if p.score > 1e-6] for r in got]
    expect = [[p for p in r if p.score > 1e-6] for r in expect]
    assert sum(len(r) for r in expect) >= 2 * len(queries)
    assert [ids(r) for r in got] == [ids(r) for r in expect]
    for g, e in zip(got, expect):
        assert [p.score for p in g] == pytest.approx([p.score for p in e], abs=1e-5)
        assert [(p.title, p.text) for p in g] == [(p.title, p.text) for p in e]
    assert "url" not in json.dumps(qdrant.config())
    again = QdrantRetriever.from_corpus(
        corpus(), "tiny2", embedder=vectors.embedder, vectors=vectors.vectors, show_progress=False
    )
    assert [[p for p in r if p.score > 1e-6] for r in again.search(queries, k=4)] == got
    with pytest.raises(ConfigError, match="one row per document"):
        QdrantRetriever.from_corpus(corpus(), "bad", vectors=vectors.vectors[:3], show_progress=False)


def test_qdrant_on_disk_and_by_client(tmp_path, vectors):
    from qdrant_client import QdrantClient

    QdrantRetriever.from_corpus(
        corpus(), "disk", embedder=vectors.embedder, path=str(tmp_path / "q"), show_progress=False
    ).client.close()
    again = QdrantRetriever("disk", embedder=vectors.embedder, client=QdrantClient(path=str(tmp_path / "q")))
    assert ids(again.search(["Kathmandu"], k=1)[0]) == ["nepal"]
    with pytest.raises(ConfigError, match="at most one"):
        QdrantRetriever("x", url="http://127.0.0.1:1", path="p")


def test_bad_corpora_and_arguments_get_clear_errors(vectors):
    with pytest.raises(ConfigError, match="empty"):
        VectorIndex([], show_progress=False)
    with pytest.raises(ConfigError, match="unique"):
        BM25Index([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], show_progress=False)
    with pytest.raises(ConfigError, match="'text'"):
        Documents.from_corpus([{"title": "no text"}])
    with pytest.raises(ConfigError, match="k must be"):
        vectors.search(["q"], k=0)
    with pytest.raises(InputError):
        vectors.search([1, 2], k=1)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="method"):
        BM25Index(["x"], method="nope", show_progress=False)


def test_optional_libraries_load_only_when_used():
    code = (
        "import json, sys, oobleck, oobleck.retrieve; from oobleck.retrieve import VectorIndex;"
        "VectorIndex(['a b', 'c d'], show_progress=False).search(['a'], k=1);"
        "print(json.dumps([m for m in ('bm25s', 'qdrant_client', 'torch', 'transformers') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
