"""A built-in module whose saved state is missing or malformed fails at load, naming the field.

Before, an Ensemble or KNNFewShot with a bad ``extra`` loaded and then raised AttributeError,
TypeError or ValueError on its first call.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from oobleck import Example, FakeLM, Predict
from oobleck.artifact import load, save
from oobleck.errors import ArtifactError
from oobleck.modules.ensemble import Ensemble
from oobleck.modules.knn import KNNFewShot

ROWS = [
    Example(text=t, label=label).with_inputs("text")
    for t, label in [("great movie", "pos"), ("awful film", "neg"), ("great fun", "pos")]
]


def _saved(tmp_path: Path, program) -> tuple[Path, dict]:
    path = tmp_path / "p.json"
    save(program, path)
    return path, json.loads(path.read_text())


def _ensemble(tmp_path: Path) -> tuple[Path, dict]:
    members = [Predict("text -> label", lm=FakeLM([{"label": x}], cycle=True)) for x in ("pos", "neg", "pos")]
    return _saved(tmp_path, Ensemble(members, size=2, seed=3))


def _knn(tmp_path: Path) -> tuple[Path, dict]:
    return _saved(
        tmp_path, KNNFewShot(Predict("text -> label", lm=FakeLM([{"label": "pos"}], cycle=True)), trainset=ROWS, k=2)
    )


def _load_broken(path: Path, doc: dict) -> str:
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError) as info:
        load(path)
    return str(info.value)


def test_intact_modules_load_and_run(tmp_path):
    for make in (_ensemble, _knn):
        path, _ = make(tmp_path)
        art = load(path, lm=FakeLM([{"label": "pos"}], cycle=True))
        assert art(text="great stuff").label == "pos"


def _set(key, value):
    return lambda extra: extra.__setitem__(key, value)


def _drop(key):
    return lambda extra: extra.pop(key)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("size", "2"), "size"),
        (_set("size", 0), "size"),
        (_set("size", 4), "size must be null or an int within 1..3"),
        (_set("size", True), "size"),
        (_set("seed", "x"), "seed"),
        (_set("seed", 1.5), "seed"),
        (_set("reduce", "mean"), "reducer 'mean'"),
        (_drop("seed"), "lacks ['seed']"),
        (_drop("reduce"), "lacks ['reduce']"),
    ],
)
def test_a_malformed_ensemble_fails_at_load(tmp_path, change, message):
    path, doc = _ensemble(tmp_path)
    change(doc["program"]["extra"])
    assert message in _load_broken(path, doc)


def test_an_ensemble_saved_without_its_state_or_members_fails_at_load(tmp_path):
    path, doc = _ensemble(tmp_path)
    del doc["program"]["extra"]
    assert "lacks ['size', 'seed', 'reduce']" in _load_broken(path, doc)
    path, doc = _ensemble(tmp_path)
    doc["program"]["children"] = []
    assert "member programs ('programs')" in _load_broken(path, doc)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("k", "2"), "k must be an int"),
        (_set("k", 0), "k must be an int"),
        (_set("k", True), "k must be an int"),
        (_set("input_fields", "text"), "input_fields"),
        (_set("input_fields", [1]), "input_fields"),
        (_set("pool", []), "pool must be a non-empty list"),
        (_set("pool", "rows"), "pool must be a non-empty list"),
        (lambda e: e["pool"].__setitem__(0, "x"), "pool[0]"),
        (lambda e: e["pool"][0].__setitem__("inputs", ["nope"]), "pool[0] names inputs"),
        (lambda e: e["pool"][1].__setitem__("inputs", None), "pool[1]"),
        (lambda e: e["pool"].pop(), "one row per pool row (2)"),
        (_set("embedder", "hashing"), "embedder config must be an object"),
        (lambda e: e["embedder"].__setitem__("dim", 8), "the embedder makes 8"),
        (_set("embeddings", 3), "embeddings must name a side file"),
        (_drop("embeddings"), "lacks ['embeddings']"),
        (_drop("k"), "lacks ['k']"),
    ],
)
def test_a_malformed_knn_fails_at_load(tmp_path, change, message):
    path, doc = _knn(tmp_path)
    change(doc["program"]["extra"])
    assert message in _load_broken(path, doc)


def _replace_array(path: Path, doc: dict, array: np.ndarray) -> None:
    """Put ``array`` in the KNN side file, with a matching size and digest (a consistent edit)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    data = buffer.getvalue()
    record = doc["files"][0]
    (path.parent / record["path"]).write_bytes(data)
    record["sha256"], record["size"] = hashlib.sha256(data).hexdigest(), len(data)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(3, dtype=np.float32), "shape (3,)"),
        (np.zeros((3, 4), dtype=np.float32), "the embedder makes"),
        (np.zeros((2, 1024), dtype=np.float32), "one row per pool row (3)"),
        (np.zeros((3, 1024), dtype=np.int64), "float matrix"),
        (np.full((3, 1024), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_knn_embeddings_that_do_not_fit_fail_at_load(tmp_path, array, message):
    path, doc = _knn(tmp_path)
    assert doc["program"]["extra"]["embedder"]["dim"] == 1024  # the default hashing embedder
    _replace_array(path, doc, array)
    assert message in _load_broken(path, doc)


def test_a_knn_saved_without_its_state_or_program_fails_at_load(tmp_path):
    path, doc = _knn(tmp_path)
    del doc["program"]["extra"]
    assert "lacks ['k', 'pool', 'embedder', 'embeddings']" in _load_broken(path, doc)
    path, doc = _knn(tmp_path)
    doc["program"]["children"] = []
    assert "the program it wraps ('program')" in _load_broken(path, doc)


# ---------------------------------------------------------------- retrieval programs


def _rag_and_multihop(tmp_path: Path) -> list[tuple[Path, dict]]:
    from oobleck.modules.multihop import MultiHop
    from oobleck.modules.rag import RAG
    from oobleck.retrieve import BM25Index

    corpus = [{"id": "1", "title": "Nepal", "text": "Kathmandu is the capital of Nepal."}]
    index = BM25Index(corpus, show_progress=False)
    (tmp_path / "rag").mkdir()
    (tmp_path / "hop").mkdir()
    return [_saved(tmp_path / "rag", RAG(index, k=1)), _saved(tmp_path / "hop", MultiHop(index, hops=2, k=1))]


@pytest.mark.parametrize("step", ["retrieve", "answer", "generate_answer"])
def test_a_retrieval_program_without_a_step_fails_at_load(tmp_path, step):
    checked = 0
    for path, doc in _rag_and_multihop(tmp_path):
        children = doc["program"]["children"]
        if not any(c["attr"] == step for c in children):
            continue
        doc["program"]["children"] = [c for c in children if c["attr"] != step]
        assert f"('{step}')" in _load_broken(path, doc)
        checked += 1
    assert checked


def test_a_retrieve_step_with_a_malformed_flag_fails_at_load(tmp_path):
    path, doc = _rag_and_multihop(tmp_path)[0]
    retrieve = next(c for c in doc["program"]["children"] if c["attr"] == "retrieve")["value"]
    retrieve["extra"]["search_on_render"] = "no"
    assert "search_on_render must be true or false" in _load_broken(path, doc)


def test_a_rag_saved_without_its_state_fails_at_load(tmp_path):
    path, doc = _rag_and_multihop(tmp_path)[0]
    del doc["program"]["extra"]
    assert "RAG query_field None" in _load_broken(path, doc)
