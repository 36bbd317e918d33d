"""Saving: a program to the artifact's JSON data and to a file (with its side files)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oobleck._files import atomic_write, check_target
from oobleck._version import __version__
from oobleck.artifact import _schema as schema
from oobleck.artifact._graph import Dumper, dump_extra
from oobleck.artifact._side_files import SideFiles
from oobleck.errors import ArtifactError
from oobleck.module import Module
from oobleck.predict import Predict

__all__ = ["save", "to_dict"]

_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


def to_dict(
    program: Module,
    *,
    provenance: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    files: SideFiles | None = None,
) -> dict[str, Any]:
    """The artifact of ``program`` as JSON data (what :func:`save` writes).

    Args:
        program: any Module (a Predict, a built-in module, or your own class).
        provenance: overrides ``program.provenance`` (what the optimizer recorded).
        metadata: your own JSON data (a timestamp, a git commit...); nothing is added for you.
        files: collects side files written by modules' ``dump_extra``.

    Raises:
        ArtifactError: the program has no predictors, or holds values that are not JSON.
    """
    if not isinstance(program, Module):
        raise ArtifactError(f"only oobleck Modules can be saved, got {type(program).__name__}")
    named = program.named_predictors()
    if not named:
        raise ArtifactError(f"{type(program).__name__} has no predictors to save")
    files = files if files is not None else SideFiles()
    names = {id(p): n for n, p in named}
    graph = Dumper(names, files).node(program, type(program).__name__)
    if provenance is None:
        provenance = getattr(program, "provenance", None) or {}
    if not isinstance(provenance, Mapping) or not isinstance(metadata or {}, Mapping):
        raise ArtifactError("provenance and metadata must be dicts of JSON data")
    return {
        "format": schema.FORMAT,
        "schema_version": schema.SCHEMA_VERSION,
        "oobleck_version": __version__,
        "program": graph,
        "predictors": [_predictor_record(name, p, files) for name, p in named],
        "provenance": schema.jsonable(dict(provenance), where="provenance"),
        "metadata": schema.jsonable(dict(metadata or {}), where="metadata"),
        "files": [],
    }


def save(
    program: Module,
    path: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``program`` as a JSON artifact (and its side files next to it).

    Args:
        program: the program to freeze.
        path: the ``.json`` file to write (replaced atomically).
        provenance: overrides ``program.provenance``.
        metadata: your own JSON data; the file holds no timestamp unless you put one here.

    Returns:
        The path written.

    Raises:
        ArtifactError: the program cannot be saved, or the text would contain a secret
            (the value of an ``*_API_KEY``/``*TOKEN``/``*SECRET`` environment variable).
        WriteError: the path was refused (a symlink, device, folder, read-only file or an input
            of the running command) or the write failed; any old file is unchanged.

    Example:
        >>> program.save("qa.json")                         # doctest: +SKIP
        >>> oobleck.load("qa.json")(question="2+2?")        # doctest: +SKIP
    """
    target = Path(path)
    files = SideFiles()
    doc = to_dict(program, provenance=provenance, metadata=metadata, files=files)
    doc["files"] = files.records(target.stem)
    text = schema.dumps(doc)
    _refuse_secrets(text, program)
    if not target.parent.exists():
        raise ArtifactError(f"cannot save to {target}: the directory {target.parent} does not exist")
    check_target(target)  # refused before any side file is written next to it
    files.write_to(target.parent, target.stem)
    atomic_write(target, text.encode("utf-8"))
    return target


def _predictor_record(name: str, p: Predict, files: SideFiles) -> dict[str, Any]:
    where = f"predictor {name!r}"
    adapter, reason = p.adapter_choice()
    record: dict[str, Any] = {
        "name": name,
        "signature": p.signature.to_dict(),
        "demos": [schema.jsonable(dict(d), where=f"{where} demo {i}") for i, d in enumerate(p.demos)],
        "adapter": {
            "name": adapter.name,
            "version": adapter.version,
            "options": adapter.options(),
            "reason": reason,
            # not named: the loaded predictor chooses its adapter for the LM it is called with
            **({"auto": True} if p.adapter_is_default() else {}),
        },
        "config": schema.jsonable(dict(p.config), where=f"{where} config"),
        "max_retries": p.max_retries,
        "lm": {str(k): str(v) for k, v in p.lm.identity.items()} if p.lm is not None else None,
        "template": [m.model_dump() for m in p.template()],
    }
    extra = dump_extra(p, files, where)
    if extra is not None:
        record["extra"] = extra
    return record


def _refuse_secrets(text: str, program: Module) -> None:
    secrets = {k: v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    for p in program.predictors():
        key = getattr(getattr(p.lm, "client", None), "api_key", None)
        if isinstance(key, str) and len(key) >= 8:
            secrets["the API key of a predictor's LM"] = key
    for name, value in secrets.items():
        if value in text:
            raise ArtifactError(
                f"refusing to save: the artifact text contains the value of {name if ' ' in name else '$' + name}. "
                "Remove it from demos, instructions, provenance or metadata."
            )
