"""An artifact is data, never authority: files inside its folder only, no network, no say over the LM."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from watchdog import within

from oobleck import ArtifactError, Example, FakeLM, Predict
from oobleck._files import ModelPolicy, read_inside, read_regular
from oobleck.artifact import load, loads
from oobleck.modules.knn import KNNFewShot
from oobleck.retrieve.embedders import HashingEmbedder

ROWS = [
    Example(text=t, label=lab).with_inputs("text")
    for t, lab in [("great movie", "pos"), ("awful film", "neg"), ("fine fun", "pos")]
]


@pytest.fixture
def knn_artifact(tmp_path) -> Path:
    KNNFewShot(Predict("text -> label"), trainset=ROWS, k=2, embedder=HashingEmbedder(dim=64)).save(
        tmp_path / "knn.json"
    )
    return tmp_path / "knn.json"


def edit(path: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


def find(node, key):
    if isinstance(node, dict):
        if key in node:
            yield node
        for v in node.values():
            yield from find(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from find(v, key)


# ---- files ----


def test_side_file_that_is_a_symlink_is_refused_even_with_matching_content(knn_artifact, tmp_path):
    side = next(tmp_path.glob("knn.*.npy"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    moved = outside / side.name
    side.rename(moved)
    side.symlink_to(moved)  # same bytes, same hash: still not inside the folder
    with pytest.raises(ArtifactError, match="symlink") as info:
        load(knn_artifact)
    assert "sha256" not in str(info.value)


@pytest.mark.parametrize("relative", ["../x", "/etc/passwd", "a/../b", "./x", "", "a\\b", "x\x00y"])
def test_paths_outside_the_folder_are_refused(tmp_path, relative):
    with pytest.raises(ArtifactError):
        read_inside(tmp_path, relative, what="side file")


def test_a_symlinked_folder_on_the_way_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_bytes(b"data")
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "sub").symlink_to(real)
    with pytest.raises(ArtifactError, match="symlink"):
        read_inside(tmp_path / "art", "sub/f", what="index file")
    (tmp_path / "art" / "own").mkdir()
    (tmp_path / "art" / "own" / "f").write_bytes(b"mine")
    assert read_inside(tmp_path / "art", "own/f", what="index file") == b"mine"


def test_fifo_side_file_and_fifo_artifact_never_block(knn_artifact, tmp_path):
    side = next(tmp_path.glob("knn.*.npy"))
    side.unlink()
    os.mkfifo(side)
    done, result = within(10.0, lambda: load(knn_artifact))
    assert done and isinstance(result, ArtifactError) and "regular file" in str(result)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    done, result = within(10.0, lambda: load(fifo))
    assert done and isinstance(result, ArtifactError)


def test_devices_and_oversized_sparse_files_are_refused_before_reading(tmp_path):
    done, result = within(10.0, lambda: load("/dev/zero"))
    assert done and isinstance(result, ArtifactError) and "regular file" in str(result)
    sparse = tmp_path / "huge.json"
    with open(sparse, "wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # 300 MB of nothing, no disk used
    done, result = within(10.0, lambda: load(sparse))
    assert done and isinstance(result, ArtifactError) and "limit" in str(result)
    with pytest.raises(ArtifactError, match="limit"):
        read_regular(sparse, what="index", max_bytes=1024)


def test_side_file_larger_than_declared_is_refused_unread(knn_artifact, tmp_path):
    side = next(tmp_path.glob("knn.*.npy"))
    with open(side, "ab") as fh:
        fh.truncate(1024 * 1024 * 1024)  # sparse: reading it would take a gigabyte
    with pytest.raises(ArtifactError, match="does not match the artifact"):
        load(knn_artifact)


# ---- models and the network ----


def test_knn_embedder_naming_a_model_needs_the_users_allowance(knn_artifact, tmp_path):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()

    def to_transformers(path):
        def change(doc):
            for node in find(doc, "embedder"):
                node["embedder"] = {"type": "transformers", "model_path": path, "batch_size": 8, "max_length": 64}

        return change

    for reference in ["sentence-transformers/all-MiniLM-L6-v2", "/etc", str(model_dir)]:
        edit(knn_artifact, to_transformers(reference))
        with pytest.raises(ArtifactError, match="allow_models"):
            load(knn_artifact)
    art = load(knn_artifact, allow_models=[model_dir])
    assert art.program.embedder.model_path == str(model_dir.resolve())
    edit(knn_artifact, to_transformers(None))  # the bundled model needs no allowance
    assert load(knn_artifact).program.embedder.model_path is None


def test_knn_embedder_sizes_are_bounded(knn_artifact):
    def huge(doc):
        for node in find(doc, "embedder"):
            node["embedder"]["dim"] = 10**12

    with pytest.raises(ArtifactError, match="dim"):
        load(edit(knn_artifact, huge))


def test_loading_never_opens_a_connection(knn_artifact, tmp_path, monkeypatch):
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model_dir = tmp_path / "m"
    model_dir.mkdir()

    def change(doc):
        for node in find(doc, "embedder"):
            node["embedder"] = {"type": "transformers", "model_path": "org/some-hub-model"}

    with pytest.raises(ArtifactError):
        load(edit(knn_artifact, change))
    assert attempts == []


def test_model_policy_resolves_spellings(tmp_path):
    policy = ModelPolicy.from_paths([tmp_path])
    assert policy.check(str(tmp_path / "." / "x" / ".."), what="m") == str(tmp_path.resolve())
    with pytest.raises(ArtifactError):
        policy.check(str(tmp_path.parent), what="m")


# ---- the LM's settings are the user's ----


@pytest.mark.parametrize(
    "key", ["model", "extra_headers", "timeout", "base_url", "api_key", "extra_body", "extra_query", "stream"]
)
def test_config_extra_cannot_steer_the_lm(tmp_path, key):
    Predict("q -> a", extra={"top_k": 4}).save(tmp_path / "p.json")

    def change(doc):
        doc["predictors"][0]["config"]["extra"] = {key: "x"}

    with pytest.raises(ArtifactError, match="may not set"):
        load(edit(tmp_path / "p.json", change))


def test_allowed_sampling_knobs_load_and_reach_the_request(tmp_path):
    Predict("q -> a", extra={"top_k": 4}).save(tmp_path / "p.json")
    lm = FakeLM([{"a": "x"}])
    art = load(tmp_path / "p.json", lm=lm)
    art(q="hi")
    assert lm.requests[0].extra == {"top_k": 4}


@pytest.mark.parametrize(
    "config",
    [
        {"n": 10**6},
        {"temperature": 10**400},
        {"max_tokens": "many"},
        {"extra": "x"},
        {"seed": 1.5},
        {"max_tokens": -5},
        {"max_tokens": 0},
        {"temperature": -1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"n": 0},
        {"top_logprobs": -1},
        {"stop": [""]},
        {"logprobs": "yes"},
    ],
)
def test_hostile_decoding_configs_are_artifact_errors(tmp_path, config):
    Predict("q -> a").save(tmp_path / "p.json")

    def change(doc):
        doc["predictors"][0]["config"] = config

    with pytest.raises(ArtifactError):
        load(edit(tmp_path / "p.json", change))


def test_huge_integers_and_deep_nesting_are_artifact_errors(tmp_path):
    Predict("q -> a").save(tmp_path / "p.json")
    text = (tmp_path / "p.json").read_text()
    with pytest.raises(ArtifactError):
        loads(text.replace('"metadata": {}', '"metadata": {"n": ' + "9" * 5000 + "}"))
    with pytest.raises(ArtifactError):
        loads(text.replace('"metadata": {}', '"metadata": ' + "[" * 100_000 + "]" * 100_000))
