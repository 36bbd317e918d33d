"""Property tests on generated signature strings: one error family, and a full round trip.

Any string either parses into a signature that calls, saves, loads and calls again with the
same outputs (on the chat and the JSON adapter), or is refused at parse time with a
SignatureError. Names come from the places that collide: Python keywords and builtins,
pydantic's BaseModel attributes, oobleck's own attributes, underscores and Unicode; types from
a small grammar that also writes malformed ones.
"""

from __future__ import annotations

import builtins
import json
import keyword
import warnings
from pathlib import Path
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typed_values import outputs_for, value_for

from oobleck import ChatAdapter, FakeLM, JSONAdapter, OobleckError, Predict, Prediction, Signature, SignatureError
from oobleck.artifact import loads, to_dict

PROPERTY = settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_CLASHING = sorted(
    {
        "self",
        "cls",
        "args",
        "kwargs",
        "inputs",
        "lm",
        "adapter",
        "demos",
        "signature",
        "usage",
        "completions",
        "warnings",
        "labels",
        "copy",
        "keys",
        "items",
        "get",
        "with_usage",
        "to_dict",
        "_data",
        "_input_keys",
        "_x",
        "__init__",
        "__class__",
        "_",
        "ñ",
        "名前",
        "ﬁeld",  # NFKC-normalizes to "field"
        "x\u0301",
        "Ω",
        "field",
        "answer",
        "question",
    }
    | set(keyword.kwlist)
    | set(keyword.softkwlist)
    | {n for n in dir(builtins) if n.isidentifier()}
    | set(dir(pydantic.BaseModel))
)

names = st.sampled_from(_CLASHING) | st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,8}\Z") | st.text(max_size=6)
# Names that may be accepted: the clashing ones that are not keywords, private or "self".
plain_names = st.sampled_from(
    [n for n in _CLASHING if n.isidentifier() and not keyword.iskeyword(n) and n[0] != "_" and n != "self"]
) | st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z")

_GOOD_LEAVES = [
    "str",
    "int",
    "float",
    "bool",
    "Any",
    "None",
    "list",
    "dict",
    "tuple",
    "List",
    "Dict",
    "typing.Literal['x']",
    "Literal['a', 'b']",
    "Literal['a', 'a']",
    "Literal[1, True, 'x']",
    "Literal['']",
    "Literal[-1, 'a']",
    "Literal[None, 'a']",
]
_BAD_LEAVES = [
    "foo",
    "os.path",
    "Literal[()]",
    "Literal[[1]]",
    "Literal[1.5]",
    "Literal[-'a']",
    "Literal",
    "Optional",
    "...",
    "1",
    "'str'",
    "str()",
    "lambda: 0",
]


def _compose(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    one = inner
    two = st.tuples(inner, inner)
    return st.one_of(
        one.map(lambda t: f"list[{t}]"),
        one.map(lambda t: f"List[{t}]"),
        one.map(lambda t: f"dict[str, {t}]"),
        two.map(lambda p: f"dict[{p[0]}, {p[1]}]"),
        two.map(lambda p: f"tuple[{p[0]}, {p[1]}]"),
        one.map(lambda t: f"Optional[{t}]"),
        two.map(lambda p: f"Union[{p[0]}, {p[1]}]"),
        one.map(lambda t: f"Union[{t}]"),
        two.map(lambda p: f"{p[0]} | {p[1]}"),
    )


def _malformed(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    one = inner
    two = st.tuples(inner, inner)
    return st.one_of(
        _compose(inner),
        one.map(lambda t: f"dict[{t}]"),
        two.map(lambda p: f"list[{p[0]}, {p[1]}]"),
        one.map(lambda t: f"tuple[{t}, ...]"),
        two.map(lambda p: f"Optional[{p[0]}, {p[1]}]"),
        one.map(lambda t: f"{t}["),
        one.map(lambda t: f"[{t}]"),
        one.map(lambda t: f"{t}[()]"),
    )


good_types = st.recursive(st.sampled_from(_GOOD_LEAVES), _compose, max_leaves=5)
type_exprs = st.recursive(st.sampled_from(_GOOD_LEAVES + _BAD_LEAVES), _malformed, max_leaves=6)
descs = st.none() | st.sampled_from(["'a description'", '"x"', "'->'", "''", "'ü \\n'"])


def _field(name: str, tp: str | None, desc: str | None) -> str:
    return name + (f": {tp}" if tp else "") + (f" = {desc}" if desc else "")


def _side(field: st.SearchStrategy[tuple[str, str | None, str | None]], min_size: int) -> st.SearchStrategy[str]:
    return st.lists(field, min_size=min_size, max_size=3, unique_by=lambda f: f[0]).map(
        lambda fs: ", ".join(_field(*f) for f in fs)
    )


# Mostly well formed: most are accepted, so the round trip runs on many names and types.
_likely = st.tuples(plain_names, st.none() | good_types, descs)
likely_specs = st.lists(_likely, min_size=1, max_size=5, unique_by=lambda f: f[0]).flatmap(
    lambda fs: st.integers(0, len(fs) - 1).map(
        lambda k: ", ".join(_field(*f) for f in fs[:k]) + " -> " + ", ".join(_field(*f) for f in fs[k:])
    )
)
# Anything: clashing and garbage names, malformed types, stray or missing arrows, random text.
_any = st.tuples(names, st.none() | type_exprs, descs | st.just("1"))
specs = st.one_of(
    likely_specs,
    st.tuples(_side(_any, 0), st.sampled_from([" -> ", "->", " - > ", " -> -> ", " "]), _side(_any, 0)).map("".join),
    st.text(max_size=40),
)


def _jsonable(pred: Prediction) -> str:
    return json.dumps({k: pydantic.TypeAdapter(Any).dump_python(v, mode="json") for k, v in pred.items()})


@PROPERTY
@given(spec=specs)
def test_any_signature_string_parses_or_is_refused_with_signature_error(spec: str) -> None:
    try:
        sig = Signature(spec)
    except SignatureError:
        return
    # Accepted: its text form reads back as the same signature.
    assert Signature(str(sig)) == sig


@PROPERTY
@given(spec=likely_specs)
def test_every_accepted_signature_calls_saves_loads_and_calls_again(spec: str) -> None:
    try:
        sig = Signature(spec)
    except SignatureError:
        return
    inputs = {name: value_for(f.type) for name, f in sig.input_fields.items()}
    for adapter in (ChatAdapter(), JSONAdapter()):
        lm = FakeLM(lambda request, sig=sig: outputs_for([sig]))
        program = Predict(sig, lm=lm, adapter=adapter)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a pydantic "shadows an attribute" warning is a finding
            before = program(**inputs)
            text = json.dumps(to_dict(program), sort_keys=True)
            loaded = loads(text, lm=lm)
            after = loaded(**inputs)
        assert _jsonable(before) == _jsonable(after), (adapter.name, spec)
        assert dict(before).keys() == sig.output_fields.keys()


@PROPERTY
@given(spec=specs)
def test_signature_strings_raise_only_oobleck_errors_when_called_with_wrong_answers(spec: str) -> None:
    """Any accepted signature, answered with text that fits nothing, fails with an OobleckError."""
    try:
        sig = Signature(spec)
    except SignatureError:
        return
    inputs = {name: value_for(f.type) for name, f in sig.input_fields.items()}
    for adapter in (ChatAdapter(), JSONAdapter()):
        program = Predict(sig, lm=FakeLM(["{[not an answer"], cycle=True), adapter=adapter)
        try:
            program(**inputs)
        except OobleckError:
            pass


def test_names_that_collide_are_refused_with_the_name_and_why() -> None:
    cases = {
        "self -> answer": "self",
        "question -> _answer": "_answer",
        "question -> answer: dict[str]": "dict 1 type argument",
        "question -> answer: list[int, str]": "list 2 type argument",
        "question -> answer: Literal[()]": "lists no allowed value",
        "question -> answer: Optional[int, str]": "Optional[int, str]",
    }
    for spec, expected in cases.items():
        try:
            Signature(spec)
        except SignatureError as exc:
            assert expected in str(exc), (spec, str(exc))
        else:
            raise AssertionError(f"{spec!r} was accepted")


def test_pydantic_and_oobleck_attribute_names_work_as_fields() -> None:
    spec = "model_config, copy, inputs -> model_fields, dict, json, usage, labels: Literal['a', 'b']"
    sig = Signature(spec)
    inputs = {"model_config": "c", "copy": "d", "inputs": "e"}
    for adapter in (ChatAdapter(), JSONAdapter()):
        lm = FakeLM(lambda request: {"model_fields": "f", "dict": "g", "json": "h", "usage": "u", "labels": "b"})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            before = Predict(sig, lm=lm, adapter=adapter)(**inputs)
            after = loads(json.dumps(to_dict(Predict(sig, lm=lm, adapter=adapter))), lm=lm)(**inputs)
        assert before["labels"] == after["labels"] == "b"
        assert dict(before) == dict(after)


def test_field_names_given_as_fields_are_checked_like_strings() -> None:
    from oobleck.signature import Field

    for name in ("self", "class", "_private", "not an identifier", "ﬁeld"):
        try:
            Signature(fields=(Field("q", "input"), Field(name, "output")))
        except SignatureError as exc:
            assert repr(name) in str(exc)
        else:
            raise AssertionError(f"{name!r} was accepted")


def test_an_input_named_self_is_an_unknown_input_not_a_type_error() -> None:
    """A row with a ``self`` key (e.g. a JSONL line) fails its own call with InputError."""
    from oobleck import InputError, Module

    class Wrap(Module):
        def __init__(self) -> None:
            self.step = Predict("question -> answer", lm=FakeLM([{"answer": "a"}], cycle=True))

        def forward(self, **inputs: Any) -> Any:
            return self.step(**inputs)

    for program in (Predict("question -> answer", lm=FakeLM([{"answer": "a"}], cycle=True)), Wrap()):
        for call in (program, program.render_calls):
            try:
                call(question="q", self="x")
            except InputError as exc:
                assert "'self'" in str(exc)
            else:
                raise AssertionError(f"{program!r} took an input named self")


def test_a_loaded_artifact_refuses_an_input_named_self_with_input_error(tmp_path: Path) -> None:
    """The artifact's own call, render and render_calls take ``self`` as an input, not a binding."""
    from oobleck import InputError, load

    Predict("question -> answer").save(tmp_path / "p.json")
    artifact = load(tmp_path / "p.json", lm=FakeLM([{"answer": "a"}], cycle=True))
    assert artifact(question="q").answer == "a"
    for call in (artifact, artifact.render, artifact.render_calls):
        try:
            call(question="q", self="x")
        except InputError as exc:
            assert "'self'" in str(exc)
        else:
            raise AssertionError(f"{call!r} took an input named self")
