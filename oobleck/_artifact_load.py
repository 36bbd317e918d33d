"""Loading helpers for artifacts: rebuilding predictors and re-attaching parameters."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from oobleck import _artifact_schema as schema
from oobleck._artifact_files import SideFiles
from oobleck._artifact_graph import call_load_extra
from oobleck.adapters import adapter_from_name
from oobleck.adapters.base import Adapter
from oobleck.errors import ArtifactError, ConfigError, SignatureError
from oobleck.example import Example
from oobleck.lm.types import LMRequest, Message
from oobleck.module import Module, Predict
from oobleck.signature import Signature


class ArtifactWarning(UserWarning):
    """A loaded artifact renders differently from when it was saved (edited, or a newer adapter)."""


def build_predictor(
    record: schema.PredictorRecord,
    files: SideFiles,
    *,
    source: str,
    strict: bool,
    adapters: Mapping[str, Adapter] | None,
) -> Predict:
    where = f"{source}: predictor {record.name!r}"
    try:
        signature = Signature.from_dict(record.signature.model_dump(by_alias=True))
    except (SignatureError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise ArtifactError(f"{where} has an unusable signature: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pydantic building a type from an untrusted schema
        raise ArtifactError(f"{where} has a signature whose types cannot be rebuilt: {exc}") from None
    adapter = _adapter(record.adapter, adapters, where)
    try:
        LMRequest.model_validate({"messages": [], **record.config})
        predictor = Predict(signature, demos=[Example(d) for d in record.demos], adapter=adapter, max_retries=record.max_retries, **record.config)
    except (ConfigError, ValueError) as exc:
        raise ArtifactError(f"{where} has an invalid decoding config {record.config}: {exc}") from None
    if record.extra is not None:
        call_load_extra(predictor, record.extra, files, where)
    problem = None
    if record.adapter.version != adapter.version:
        problem = f"it was saved with adapter {adapter.name!r} version {record.adapter.version}, this one is {adapter.version}"
    else:
        try:
            rendered = predictor.template()
        except Exception as exc:  # noqa: BLE001 - a demo the adapter cannot render
            raise ArtifactError(f"{where} cannot render its prompt: {type(exc).__name__}: {exc}") from None
        stored = [Message(role=m.role, content=m.content) for m in record.template]
        if rendered != stored:
            problem = "the stored template differs from the one rendered now " + _first_difference(stored, rendered)
    if problem:
        message = f"{where} renders differently than when saved: {problem} (the file was edited, or the format changed)"
        if strict:
            raise ArtifactError(message)
        warnings.warn(message + "; using the prompt rendered now", ArtifactWarning, stacklevel=4)
    return predictor


def _first_difference(stored: list[Message], rendered: list[Message]) -> str:
    if len(stored) != len(rendered):
        return f"({len(stored)} messages stored, {len(rendered)} rendered)"
    for i, (a, b) in enumerate(zip(stored, rendered)):
        if a != b:
            return f"(message {i}: stored {a.content[:60]!r}, rendered {b.content[:60]!r})"
    return ""


def _adapter(record: schema.AdapterRecord, adapters: Mapping[str, Adapter] | None, where: str) -> Adapter:
    if adapters and record.name in adapters:
        return adapters[record.name]
    try:
        adapter = adapter_from_name(record.name)
    except ConfigError:
        raise ArtifactError(
            f"{where} uses adapter {record.name!r}, which this oobleck does not have; "
            f"pass load(..., adapters={{{record.name!r}: YourAdapter()}})"
        ) from None
    if record.options:
        unknown = [k for k in record.options if not hasattr(adapter, k)]
        if unknown:
            raise ArtifactError(f"{where}: adapter {record.name!r} has no option(s) {unknown}")
        try:
            adapter = type(adapter)(**record.options)  # type: ignore[call-arg]
        except TypeError as exc:
            raise ArtifactError(f"{where}: bad options for adapter {record.name!r}: {exc}") from None
    return adapter


def reattach(program: Module, doc: schema.ArtifactDoc, built: Mapping[str, Predict], source: str) -> None:
    targets = program.named_predictors()
    have = [n for n, _ in targets]
    missing = [n for n in built if n not in have]
    unexpected = [n for n in have if n not in built]
    if missing or unexpected:
        raise ArtifactError(
            f"{source} does not fit {type(program).__name__}: the artifact has predictors {list(built)}, "
            f"the program has {have}" + (f"; missing in the program: {missing}" if missing else "")
            + (f"; not in the artifact: {unexpected}" if unexpected else "")
        )
    records = {r.name: r for r in doc.predictors}
    plan = []
    for name, target in targets:
        saved = records[name].signature
        mine = [(f.name, f.kind, _type_str(f.type)) for f in target.signature.fields]
        theirs = [(f.name, f.kind, f.type) for f in saved.fields]
        if mine != theirs:
            raise ArtifactError(
                f"{source}: predictor {name!r} was saved with fields {_fields_str(theirs)} "
                f"but {type(program).__name__} has {_fields_str(mine)}"
            )
        loaded = built[name]
        signature = target.signature.with_instructions(loaded.signature.instructions)
        for field in loaded.signature.fields:
            if field.desc != signature[field.name].desc:
                signature = signature.with_updated_field(field.name, desc=field.desc)
        plan.append((target, signature, loaded))
    # Everything was checked above: from here on nothing can fail half-way.
    for target, signature, loaded in plan:
        target.signature = signature
        target.demos = list(loaded.demos)
        target.config = dict(loaded.config)
        target.max_retries = loaded.max_retries
        target.adapter = loaded.adapter


def _type_str(tp: Any) -> str:
    from oobleck import _types

    return _types.type_to_str(tp)


def _fields_str(fields: Sequence[tuple[str, str, str]]) -> str:
    ins = ", ".join(f"{n}: {t}" for n, k, t in fields if k == "input")
    outs = ", ".join(f"{n}: {t}" for n, k, t in fields if k == "output")
    return f"'{ins} -> {outs}'"
