"""Property tests on generated artifacts: load and run, or ArtifactError; nothing else.

Each example mutates a valid saved artifact (a Predict with demos and typed fields, a
ChainOfThought, an Ensemble, a KNNFewShot with its side file): a key dropped, a value replaced
by JSON of another type, a value nested thousands deep, a huge string, a list item repeated.
``oobleck.load`` either returns a program or raises ArtifactError; a program it returns, called
with a FakeLM answering its output fields, raises nothing but OobleckError subclasses.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typed_values import inputs_for, outputs_for

from oobleck import ArtifactError, ChainOfThought, Example, FakeLM, OobleckError, Predict
from oobleck.artifact import load
from oobleck.modules.ensemble import Ensemble
from oobleck.modules.knn import KNNFewShot
from oobleck.retrieve.embedders import HashingEmbedder

PROPERTY = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

ROWS = [
    Example(text=t, label=lab).with_inputs("text")
    for t, lab in [("great movie", "pos"), ("awful film", "neg"), ("fine fun", "pos")]
]
_DEEP = "@@deep@@"
_HUGE = "@@huge@@"


def _programs() -> dict[str, Any]:
    typed = Predict("question, context: list[str] -> answer, label: Literal['yes', 'no'], score: float")
    typed.demos = [
        {"question": "Is it?", "context": ["a", "b"], "answer": "yes it is", "label": "yes", "score": 0.5},
        {"question": "Not?", "context": [], "answer": "no", "label": "no", "score": 1.0},
    ]
    return {
        "typed": typed,
        "cot": ChainOfThought("question -> answer: int"),
        "ensemble": Ensemble([Predict("q -> a"), Predict("q -> a: Literal['x', 'y']")]),
        "knn": KNNFewShot(Predict("text -> label"), trainset=ROWS, k=2, embedder=HashingEmbedder(dim=32)),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each program saved once: its folder (side files included) and its artifact document."""
    out = {}
    for name, program in _programs().items():
        folder = tmp_path_factory.mktemp(name)
        program.save(folder / "program.json")
        out[name] = (folder, json.loads((folder / "program.json").read_text()))
    return out


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
replacements = st.one_of(
    json_values,
    st.just(_DEEP),
    st.just(_HUGE),
    st.sampled_from(["", "str", "list[int]", "dict[str]", "self", "_x", "model_config", "predictor", "module"]),
    st.sampled_from([-1, 0, 2**63, 10**400, 1e308]),
)


def _mutate(doc: dict[str, Any], path: tuple[Any, ...], kind: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if not path:
        return doc if kind != "replace" else {"format": "oobleck.artifact", "schema_version": 1, "program": value}
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if kind == "drop":
        del parent[last]
    elif kind == "repeat" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    else:
        parent[last] = value
    return doc


def _text(doc: dict[str, Any], depth: int) -> str:
    text = json.dumps(doc)
    text = text.replace(json.dumps(_DEEP), "[" * depth + "]" * depth)
    return text.replace(json.dumps(_HUGE), json.dumps("x" * 200_000))


@PROPERTY
@given(data=st.data())
def test_a_mutated_artifact_loads_and_runs_or_raises_artifact_error(
    saved: dict[str, tuple[Path, dict[str, Any]]], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(saved)), label="program")
    folder, doc = saved[name]
    paths = list(_paths(doc))
    mutated = doc
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        # Half the mutations land in the program graph (module types, children, extra state),
        # where a malformed value is likeliest to load and then fail at the call.
        root = data.draw(st.sampled_from([(), ("program",)]), label="under")
        candidates = [p for p in _paths(mutated) if p[: len(root)] == root] or [()]
        path = data.draw(st.sampled_from(candidates), label="path")
        kind = data.draw(st.sampled_from(["drop", "replace", "repeat"]), label="kind")
        mutated = _mutate(mutated, path, kind, data.draw(replacements, label="value"))
    depth = data.draw(st.sampled_from([10, 200, 3000]), label="depth")
    target = folder / f"mutated-{len(paths)}.json"
    target.write_text(_text(mutated, depth))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArtifactWarning: an edited file renders differently
        try:
            artifact = load(target)
        except ArtifactError:
            return
        signatures = [p.signature for p in artifact.predictors.values()]
        answer = outputs_for(signatures)
        artifact.program.set_lm(FakeLM(lambda request: answer))
        try:
            artifact(**inputs_for(signatures))
        except OobleckError:
            pass


def test_the_unmutated_artifacts_load_and_run(saved: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    for name, (folder, _) in saved.items():
        artifact = load(folder / "program.json")
        signatures = [p.signature for p in artifact.predictors.values()]
        answer = outputs_for(signatures)
        artifact.program.set_lm(FakeLM(lambda request, answer=answer: answer))
        pred = artifact(**inputs_for(signatures))
        assert set(signatures[-1].output_fields) <= set(pred), name


def _drop(key: str) -> Any:
    return lambda doc: doc["program"].pop(key)


def _extra(**values: Any) -> Any:
    return lambda doc: doc["program"]["extra"].update(values)


# Found by the property above (with more examples than the suite runs).
@pytest.mark.parametrize(
    ("name", "change"),
    [
        pytest.param("ensemble", _drop("extra"), id="ensemble-without-extra"),
        pytest.param("ensemble", _extra(size="2"), id="ensemble-size-a-string"),
        pytest.param("ensemble", _extra(size=0), id="ensemble-size-zero"),
        pytest.param("ensemble", _extra(size=2.0), id="ensemble-size-a-float"),
        pytest.param("ensemble", _extra(seed=[1]), id="ensemble-seed-a-list"),
        pytest.param("knn", lambda doc: doc["program"].update(children=[]), id="knn-without-its-predictor"),
        pytest.param("knn", _drop("extra"), id="knn-without-extra"),
        pytest.param("knn", _extra(pool=[]), id="knn-empty-pool"),
        pytest.param(
            "knn",
            lambda doc: doc["program"]["extra"]["embedder"].update(dim=1024),
            id="knn-embedder-dim-not-the-embeddings",
        ),
    ],
)
def test_malformed_module_state_fails_at_load_or_with_an_oobleck_error(
    saved: dict[str, tuple[Path, dict[str, Any]]], name: str, change: Any
) -> None:
    folder, doc = saved[name]
    mutated = copy.deepcopy(doc)
    change(mutated)
    target = folder / "regression.json"
    target.write_text(json.dumps(mutated))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            artifact = load(target)
        except ArtifactError:
            return
        signatures = [p.signature for p in artifact.predictors.values()]
        answer = outputs_for(signatures)
        artifact.program.set_lm(FakeLM(lambda request: answer))
        try:
            artifact(**inputs_for(signatures))
        except OobleckError:
            pass
