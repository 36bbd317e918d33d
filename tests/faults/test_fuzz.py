"""Property tests on hostile input: only oobleck errors come out, nothing hangs, nothing is read outside.

Every property runs under a per-example deadline (a hang or an exponential blow-up fails it),
on signature strings, both adapters' parsers, LM response bodies, field schemas, and the
artifact loader on mutated documents and generated file trees.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchdog import within

from oobleck import (
    ArtifactError,
    ChatAdapter,
    JSONAdapter,
    LMResponseError,
    OobleckError,
    ParseError,
    Predict,
    Signature,
)
from oobleck._types import type_from_schema
from oobleck.artifact import ArtifactWarning, load, loads
from oobleck.lm import _chat_wire

FUZZ = settings(
    max_examples=150,
    deadline=5000,  # ms per example: generous for a shared machine, fatal for a hang or a blow-up
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)

# ---- signature strings ----

_TOKENS = [
    "a",
    "b",
    "question",
    "answer",
    "->",
    ",",
    ":",
    "=",
    "'desc'",
    "[",
    "]",
    "(",
    ")",
    "|",
    ".",
    "...",
    "int",
    "str",
    "float",
    "bool",
    "list",
    "dict",
    "tuple",
    "Any",
    "None",
    "Optional",
    "Union",
    "Literal",
    "typing",
    "'x'",
    "1",
    "True",
    "lambda",
    "*",
    "**",
    "#",
    "\n",
    " ",
    "\\",
    '"',
    "->->",
]


@FUZZ
@given(st.lists(st.sampled_from(_TOKENS), max_size=30).map(" ".join) | st.text(max_size=200))
def test_signature_strings_only_raise_signature_errors(spec):
    try:
        sig = Signature(spec)
    except OobleckError:
        return
    assert sig.output_fields
    again = Signature(str(sig))  # what parsed once parses again from its own spelling
    assert list(again.output_fields) == list(sig.output_fields)


# ---- both adapters' parsers ----


class Point(pydantic.BaseModel):
    x: int
    y: list[str]


SIGNATURES = [
    Signature("q -> answer"),
    Signature("q -> n: int, ok: bool"),
    Signature("q -> label: Literal['pos', 'neg', 'neutral']"),
    Signature("q -> items: list[int], score: float"),
    Signature("q -> table: dict[str, list[int]], maybe: Optional[int]"),
    Signature("q -> point: Point", types={"Point": Point}),
]


def _answers(sig: Signature) -> st.SearchStrategy[str]:
    names = list(sig.output_fields)
    marker_text = st.lists(
        st.tuples(st.sampled_from([*names, "completed", "other"]), st.text(max_size=40) | json_values.map(json.dumps)),
        max_size=4,
    ).map(lambda parts: "\n".join(f"[[ ## {n} ## ]]\n{v}" for n, v in parts))
    json_text = st.dictionaries(st.sampled_from([*names, "x"]), json_values, max_size=4).map(json.dumps)
    nested = st.integers(1, 3000).map(lambda n: "{" + '"a": [' * n + "1" + "]" * n + "}")
    return marker_text | json_text | nested | st.text(max_size=300)


@FUZZ
@given(st.data())
def test_adapter_parsers_only_raise_parse_errors(data):
    sig = data.draw(st.sampled_from(SIGNATURES))
    text = data.draw(_answers(sig))
    for adapter in (ChatAdapter(), JSONAdapter()):
        try:
            values = adapter.parse(sig, text)
        except ParseError as exc:
            assert exc.raw == text and str(exc)
            continue
        assert set(values) == set(sig.output_fields)


# ---- LM response bodies ----

_choice = st.fixed_dictionaries(
    {},
    optional={
        "message": st.none()
        | st.text(max_size=5)
        | st.fixed_dictionaries(
            {}, optional={"content": st.none() | st.text(max_size=20) | st.integers() | json_values}
        ),
        "finish_reason": st.none() | st.sampled_from(["stop", "length"]) | st.integers(),
        "logprobs": st.none()
        | json_values
        | st.fixed_dictionaries(
            {
                "content": st.lists(
                    json_values
                    | st.fixed_dictionaries(
                        {
                            "token": st.text(max_size=3) | st.integers(),
                            "logprob": st.floats() | st.text(max_size=3),
                            "top_logprobs": json_values,
                        }
                    ),
                    max_size=3,
                )
            }
        ),
    },
)
_bodies = json_values | st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(_choice | json_values, max_size=3) | json_values,
        "usage": json_values
        | st.fixed_dictionaries({}, optional={"prompt_tokens": json_values, "completion_tokens": json_values}),
        "model": json_values,
        "error": json_values,
    },
)


@FUZZ
@given(_bodies)
def test_response_bodies_become_responses_or_response_errors(body):
    try:
        response = _chat_wire.from_dict(body)
    except LMResponseError as exc:
        assert "expected" in str(exc) or "error" in str(exc)
        return
    assert response.choices and all(isinstance(c.text, str) for c in response.choices)
    assert response.usage.prompt_tokens >= 0 and response.usage.completion_tokens >= 0


# ---- field schemas ----

_schema_leaf = (
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array", "weird"])}
    )
    | st.fixed_dictionaries({"$ref": st.sampled_from(["#/$defs/A", "#/$defs/B", "#/$defs/none", "x"])})
    | st.fixed_dictionaries({"enum": st.lists(json_values, max_size=3)})
)


def _schema_node(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.fixed_dictionaries({"anyOf": st.lists(inner, max_size=4)})
        | st.fixed_dictionaries({"type": st.just("array"), "items": inner})
        | st.fixed_dictionaries({"type": st.just("array"), "prefixItems": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries(
            {
                "type": st.just("object"),
                "properties": st.dictionaries(st.text(max_size=6), inner, max_size=3),
                "required": st.lists(st.text(max_size=6), max_size=2),
            }
        )
        | st.fixed_dictionaries({"type": st.just("object"), "additionalProperties": inner})
        | json_values
    )


_schemas = st.recursive(_schema_leaf, _schema_node, max_leaves=30)


@FUZZ
@given(_schemas, st.dictionaries(st.sampled_from(["A", "B"]), _schemas, max_size=2))
def test_field_schemas_rebuild_or_raise_artifact_errors(schema, defs):
    document = dict(schema, **{"$defs": defs}) if isinstance(schema, dict) else schema
    try:
        tp = type_from_schema(document)
    except ArtifactError:
        return
    pydantic.TypeAdapter(tp)  # whatever was rebuilt is a type pydantic can use


# ---- the artifact loader: mutated documents ----


def _base_doc(tmp: Path) -> dict[str, Any]:
    Predict(
        "question: str, k: int -> answer: Literal['a', 'b'], n: list[int]",
        demos=[{"question": "q", "k": 1, "answer": "a", "n": [1]}],
        temperature=0.0,
    ).save(tmp / "p.json")
    return json.loads((tmp / "p.json").read_text())


_DOC = _base_doc(Path(tempfile.mkdtemp()))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


_ALL_PATHS = _paths(_DOC)


def _replace(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(_ALL_PATHS), json_values | _schemas), min_size=1, max_size=3))
def test_mutated_artifacts_load_or_raise_artifact_errors(mutations):
    doc = _DOC
    for path, value in mutations:
        try:
            doc = _replace(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ArtifactWarning)  # an edited demo renders differently: expected
            art = loads(json.dumps(doc))
    except ArtifactError as exc:
        assert str(exc)
        return
    for predictor in art.predictors.values():
        predictor.template()  # a loaded artifact renders


# ---- the artifact loader: generated file trees ----

_opened: list[str] = []
_auditing: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if _auditing and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)

_KINDS = st.sampled_from(["regular", "symlink-out", "symlink-in", "fifo", "dir", "missing", "big"])


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(["s1.npy", "sub", "s2.bin", "../up", "/etc/passwd", "a/b"]), _KINDS),
        min_size=1,
        max_size=3,
    )
)
def test_generated_file_trees_never_read_outside_the_folder(tree):
    root = Path(tempfile.mkdtemp())
    try:
        art_dir = root / "art"
        outside = root / "outside"
        art_dir.mkdir()
        outside.mkdir()
        secret = outside / "secret"
        secret.write_bytes(b"the contents must not be read")
        doc = copy.deepcopy(_DOC)
        doc["files"] = []
        for i, (name, kind) in enumerate(tree):
            target = art_dir / name if not name.startswith("/") and ".." not in name else None
            data = b"x" * (i + 1)
            if target is not None and "/" not in name and not target.exists():
                if kind == "regular":
                    target.write_bytes(data)
                elif kind == "symlink-out":
                    target.symlink_to(secret)
                    data = secret.read_bytes()
                elif kind == "symlink-in":
                    (art_dir / f"real{i}").write_bytes(data)
                    target.symlink_to(art_dir / f"real{i}")
                elif kind == "fifo":
                    os.mkfifo(target)
                elif kind == "dir":
                    target.mkdir()
                elif kind == "big":
                    with open(target, "wb") as fh:
                        fh.truncate(3 * 1024 * 1024 * 1024)
            import hashlib

            doc["files"].append(
                {"name": f"f{i}", "path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            )
        (art_dir / "p.json").write_text(json.dumps(doc))
        _opened.clear()
        _auditing.append(True)
        try:
            done, outcome = within(10.0, lambda: load(art_dir / "p.json"))
        finally:
            _auditing.clear()
        assert done, "loading blocked (a FIFO or special file was opened for reading)"
        assert not isinstance(outcome, BaseException) or isinstance(outcome, ArtifactError), repr(outcome)
        for opened in _opened:
            # Relative names are opened against the artifact's folder (dir_fd); the last step is
            # never followed (O_NOFOLLOW), so the name itself must lie inside the folder.
            named = Path(opened) if os.path.isabs(opened) else art_dir / opened
            if root.resolve() not in named.parent.resolve().parents and named.parent.resolve() != root.resolve():
                continue  # python's own files (imports), not the artifact's
            place = named.parent.resolve() / named.name
            assert place == art_dir.resolve() or art_dir.resolve() in place.parents, (
                f"opened {opened} outside the folder"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_fifo_in_a_generated_tree_is_refused_quickly():
    # A directed case of the property above, kept for a readable failure.
    root = Path(tempfile.mkdtemp())
    try:
        Predict("q -> a").save(root / "p.json")
        doc = json.loads((root / "p.json").read_text())
        os.mkfifo(root / "pipe")
        doc["files"] = [{"name": "f", "path": "pipe", "sha256": "0" * 64, "size": 1}]
        (root / "p.json").write_text(json.dumps(doc))
        with pytest.raises(ArtifactError, match="regular file"):
            load(root / "p.json")
    finally:
        shutil.rmtree(root, ignore_errors=True)
