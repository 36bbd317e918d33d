"""What a served program takes and returns: its callables and the pydantic models of its signatures.

Each predictor's inputs and outputs become a pydantic model built from the signature's field
types (a ``Literal`` becomes an ``enum``, ``list[str]`` an array of strings, a pydantic output
model a nested object), so the OpenAPI schema and the validation of a request come from one
place. A program whose inputs the file does not know (several predictors) takes any JSON object.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from oobleck._version import __version__
from oobleck.artifact import Artifact, load
from oobleck.errors import ConfigError
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.predict import Predict
from oobleck.signature import Signature

__all__ = ["ErrorBody", "Served", "Target", "served"]


class ErrorDetail(pydantic.BaseModel):
    """What went wrong: a short type name and a message saying how to fix it."""

    type: str
    message: str


class ErrorBody(pydantic.BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


@dataclass(frozen=True, slots=True)
class Target:
    """One runnable endpoint: the whole program (``name`` None) or one predictor."""

    name: str | None
    call: Callable[..., Any]
    module: Module  # what streams: the program, or the predictor
    inputs: type[pydantic.BaseModel] | None  # None: any JSON object (the program's inputs are unknown)
    outputs: type[pydantic.BaseModel] | None
    batch_item: type[pydantic.BaseModel]
    input_names: list[str] | None
    accepts: inspect.Signature | None = None  # forward's parameters, checked when ``inputs`` is None


@dataclass(frozen=True, slots=True)
class Served:
    """The program behind an app: its endpoints and what ``GET /`` describes."""

    program: Target | None  # None: a user class loaded without its forward()
    predictors: Mapping[str, Target]
    description: dict[str, Any]
    source: str
    not_runnable: str = ""
    models: list[type[pydantic.BaseModel]] = field(default_factory=list)


def _model_name(text: str, suffix: str, taken: set[str]) -> str:
    words = [w for w in re.split(r"[^0-9A-Za-z]+", text) if w]
    base = "".join(w[:1].upper() + w[1:] for w in words) or "Predictor"
    if base[0].isdigit():
        base = "P" + base
    name, n = base + suffix, 2
    while name in taken:
        name, n = f"{base}{n}{suffix}", n + 1
    taken.add(name)
    return name


def _fields_model(name: str, signature: Signature, kind: str, doc: str) -> type[pydantic.BaseModel]:
    fields = signature.input_fields if kind == "input" else signature.output_fields
    # Each field under a neutral Python name with the signature's name as its alias: a field
    # called "json" or "copy" would otherwise shadow BaseModel's own attributes.
    definitions: dict[str, Any] = {
        f"field_{i}": (f.type, pydantic.Field(alias=n, title=n.replace("_", " ").title(), description=f.desc or None))
        for i, (n, f) in enumerate(fields.items())
    }
    config = pydantic.ConfigDict(extra="forbid" if kind == "input" else "allow")
    model: type[pydantic.BaseModel] = pydantic.create_model(name, __config__=config, __doc__=doc, **definitions)
    return model


def _batch_item(name: str, outputs: type[pydantic.BaseModel] | None) -> type[pydantic.BaseModel]:
    out_type: Any = outputs if outputs is not None else dict[str, Any]
    model: type[pydantic.BaseModel] = pydantic.create_model(
        name,
        __doc__="One input's answer in a batch: its status, and its outputs or its error.",
        status=(int, pydantic.Field(description="the HTTP status this input alone would have had")),
        outputs=(out_type | None, None),
        error=(ErrorDetail | None, None),
        usage=(dict[str, Any] | None, None),
    )
    return model


def _predictor_target(name: str, p: Predict, taken: set[str]) -> Target:
    sig = p.signature
    inputs = _fields_model(_model_name(name, "Inputs", taken), sig, "input", f"The inputs of predictor {name!r}.")
    outputs = _fields_model(_model_name(name, "Outputs", taken), sig, "output", f"The outputs of predictor {name!r}.")
    item = _batch_item(_model_name(name, "BatchItem", taken), outputs)
    return Target(name, p.__call__, p, inputs, outputs, item, list(sig.input_fields))


def _forward_inputs(module: Module, only: Target | None) -> tuple[list[str] | None, inspect.Signature | None]:
    """The names the program takes (None: unknown) and a signature to check a call by.

    See :func:`_takes`. The signature is forward's own, or, where the names come from the
    module forward delegates to, one that takes exactly those names.
    """
    if isinstance(module, Predict):
        return (only.input_names if only else None), None
    names, accepts = _takes(module, set())
    if names is not None and accepts is None and not (only is not None and set(names) == set(only.input_names or ())):
        accepts = inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
    return names, accepts


def _takes(module: Module, seen: set[int]) -> tuple[list[str] | None, inspect.Signature | None]:
    """The inputs a module takes: forward's named ones, or those of the module it delegates to.

    A Predict takes its signature's inputs; a retrieval program (RAG, MultiHop) or a ReAct agent
    takes its answer step's inputs less those it fills itself (``context``, ``trajectory``). A
    ``forward(**inputs)`` hands its inputs to the one module it holds (ChainOfThought, BestOfN, Refine,
    KNNFewShot, a user's wrapper), or to several that all take the same inputs (Ensemble).
    """
    from oobleck.modules.multihop import MultiHop
    from oobleck.modules.rag import RAG, program_inputs
    from oobleck.modules.react import ReAct

    if id(module) in seen:  # a module that holds itself: nothing to learn
        return None, None
    seen = seen | {id(module)}
    if isinstance(module, Predict):
        return list(module.signature.input_fields), None
    if isinstance(module, (RAG, MultiHop)):
        answer = module.answer if isinstance(module, RAG) else module.generate_answer
        steps = answer.predictors()
        return (program_inputs(steps[-1].signature) if steps else None), None
    if isinstance(module, ReAct):
        return [n for n in module.react.signature.input_fields if n != "trajectory"], None
    try:
        accepts = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return None, None
    params = list(accepts.parameters.values())
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return named, accepts
    if named:  # some inputs named, the rest passed on: not known
        return None, None
    found = [_takes(m, seen) for m in _held(module)]
    if not found or found[0][0] is None or any(names != found[0][0] for names, _ in found):
        return None, None  # none held, or held modules that take unknown or different inputs
    return found[0]


def _held(module: Module) -> list[Module]:
    """The modules a module holds directly (as attributes, or in a list or tuple attribute)."""
    held: list[Module] = []
    for _, value in module._children():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, Module) and all(item is not h for h in held):
                held.append(item)
    return held


def served(
    program: Artifact | Module | str | os.PathLike[str],
    *,
    lm: LM | None = None,
    tools: Any = None,
) -> Served:
    """Load (if given a path) and describe what to serve.

    Raises:
        ConfigError: ``program`` is neither a path, an Artifact nor a Module.
        ArtifactError: the file could not be loaded.
    """
    own: Module | None = None  # the program the app runs with its own LM: a copy, the caller's is left alone
    if isinstance(program, (str, os.PathLike)):
        program = load(program, lm=lm, tools=tools)
    elif lm is not None and isinstance(program, (Artifact, Module)):
        own = (program.program if isinstance(program, Artifact) else program).copy().set_lm(lm)
    if isinstance(program, Artifact):
        artifact: Artifact | None = program if own is None else None
        module = own if own is not None else program.program
        runnable, source = program.runnable, program.source
        class_path, provenance = program.class_path, program.provenance
    elif isinstance(program, Module):
        artifact, module, runnable, source = (
            None,
            own if own is not None else program,
            True,
            f"<{type(program).__name__}>",
        )
        class_path, provenance = f"{type(program).__module__}.{type(program).__qualname__}", {}
    else:
        raise ConfigError(
            f"asgi_app() serves an artifact path, a loaded Artifact or a Module, got {type(program).__name__}"
        )
    taken: set[str] = set()
    predictors = {name: _predictor_target(name, p, taken) for name, p in module.named_predictors()}
    target: Target | None = None
    not_runnable = ""
    if runnable:
        only = next(iter(predictors.values())) if len(predictors) == 1 else None
        call = artifact.__call__ if artifact is not None else module.__call__
        names, accepts = _forward_inputs(module, only)
        if only is not None and names is not None and set(names) == set(only.input_names or ()):
            # the program takes what its predictor takes (in whatever order forward names them)
            item = only.batch_item
            target = Target(None, call, module, only.inputs, only.outputs, item, only.input_names)
        else:
            item = _batch_item(_model_name("program", "BatchItem", taken), None)
            target = Target(None, call, module, None, None, item, names, accepts)
    else:
        not_runnable = (
            f"this artifact was saved from {class_path}, whose forward() it does not hold; "
            f"POST to /predictors/<name> for name in {list(predictors)}"
        )
    only_inputs = next(iter(predictors.values())).input_names if len(predictors) == 1 else None
    models: list[type[pydantic.BaseModel]] = []
    for t in [*predictors.values(), *([target] if target else [])]:
        models += [m for m in (t.inputs, t.outputs, t.batch_item) if m is not None and m not in models]
    description = {
        "class": class_path,
        "runnable": runnable,
        "inputs": (target.input_names if target else only_inputs) if len(predictors) == 1 else None,
        "predictors": {
            name: {
                "inputs": list(p.signature.input_fields),
                "outputs": list(p.signature.output_fields),
                "instructions": p.instructions,
            }
            for name, p in module.named_predictors()
        },
        "provenance": provenance,
        "oobleck_version": __version__,
    }
    return Served(target, predictors, description, source, not_runnable, models)
