"""Frozen artifacts: a compiled program as one self-describing JSON file.

``program.save("qa.json")`` writes everything needed to run the program without the Python
class that built it: per predictor its signature (field names, types, descriptions, JSON
schemas, instructions), demos, adapter name and version, decoding config, retries, the LM's
identity (never a key) and the exact prompt template it renders; the module graph; and the
provenance the optimizer left on ``program.provenance``. ``oobleck.artifact.load("qa.json")``
gives back a callable :class:`Artifact`. Keys are sorted and nothing varies between runs, so the
same program always saves to the same bytes.

A shortened example::

    {
      "format": "oobleck.artifact",
      "metadata": {},
      "oobleck_version": "0.1.0",
      "predictors": [
        {
          "adapter": {"name": "chat", "options": {}, "version": "1"},
          "config": {"temperature": 0.0},
          "demos": [{"answer": "Paris", "question": "Capital of France?"}],
          "lm": {"backend": "openai", "endpoint": "https://api.openai.com/v1/", "model": "gpt-4o-mini"},
          "max_retries": 1,
          "name": "self",
          "signature": {"fields": [...], "instructions": "Answer in a few words.", "name": "Signature"},
          "template": [{"content": "Answer in a few words. ...", "role": "system"}, ...]
        }
      ],
      "program": {"name": "self", "node": "predictor"},
      "provenance": {"optimizer": "BootstrapFewShot", "seed": 0, "scores": {...}},
      "schema_version": 1
    }

Loading reads JSON only: no pickle, no import of any class path named in the file, no code
from the file. Anything unexpected (corrupt, truncated, newer ``schema_version``, wrong types,
hostile structure) raises :class:`~oobleck.errors.ArtifactError` saying what is wrong.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from oobleck import _artifact_schema as schema
from oobleck._artifact_files import SideFiles, atomic_write
from oobleck._artifact_graph import (
    Builder,
    Dumper,
    FrozenModule,
    apply_extras,
    dump_extra,
    register_module_type,
)
from oobleck._artifact_load import ArtifactWarning, build_predictor, reattach
from oobleck._version import __version__
from oobleck.adapters.base import Adapter
from oobleck.errors import ArtifactError
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.lm.types import Message
from oobleck.module import Module, Predict, RenderedCall

__all__ = [
    "Artifact",
    "ArtifactWarning",
    "FrozenModule",
    "SideFiles",
    "export_messages",
    "export_request",
    "load",
    "loads",
    "register_module_type",
    "save",
    "to_dict",
]

SCHEMA_VERSION = schema.SCHEMA_VERSION
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)


# ---------------------------------------------------------------- saving


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
        "schema_version": SCHEMA_VERSION,
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
    files.write_to(target.parent, target.stem)
    atomic_write(target, text.encode("utf-8"))
    return target


def _predictor_record(name: str, p: Predict, files: SideFiles) -> dict[str, Any]:
    where = f"predictor {name!r}"
    adapter = p.resolve_adapter()
    record: dict[str, Any] = {
        "name": name,
        "signature": p.signature.to_dict(),
        "demos": [schema.jsonable(dict(d), where=f"{where} demo {i}") for i, d in enumerate(p.demos)],
        "adapter": {"name": adapter.name, "version": adapter.version, "options": _adapter_options(adapter)},
        "config": schema.jsonable(dict(p.config), where=f"{where} config"),
        "max_retries": p.max_retries,
        "lm": {str(k): str(v) for k, v in p.lm.identity.items()} if p.lm is not None else None,
        "template": [m.model_dump() for m in p.template()],
    }
    extra = dump_extra(p, files, where)
    if extra is not None:
        record["extra"] = extra
    return record


def _adapter_options(adapter: Adapter) -> dict[str, Any]:
    strict = getattr(adapter, "strict", None)
    return {"strict": strict} if isinstance(strict, bool) and strict else {}


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


# ---------------------------------------------------------------- loading


def load(
    path: str | os.PathLike[str],
    *,
    program: Module | None = None,
    lm: LM | None = None,
    strict: bool = False,
    adapters: Mapping[str, Adapter] | None = None,
) -> Artifact:
    """Load an artifact saved by :func:`save`.

    Args:
        path: the ``.json`` file.
        program: an instance of the class that built the artifact (e.g. ``MyProgram()``); the
            saved parameters are attached to its predictors by name, so its own ``forward``
            (with any control flow) runs. Without it the program is rebuilt from the file.
        lm: the LM every predictor uses (otherwise ``oobleck.context(lm=...)`` at call time).
        strict: raise instead of warning when a predictor renders differently than when saved
            (an edited file, or an adapter whose version changed).
        adapters: adapters by name, for artifacts that use an adapter oobleck does not ship.

    Returns:
        A callable :class:`Artifact`.

    Raises:
        ArtifactError: the file is missing, corrupt, from a newer oobleck, not an artifact,
            or does not fit ``program``.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {source}: {exc.strerror or exc}") from None
    data = schema.parse_text(raw, source=source)
    return _from_data(data, base_dir=Path(path).parent, source=source, program=program, lm=lm, strict=strict, adapters=adapters)


def loads(
    text: str | bytes,
    *,
    program: Module | None = None,
    lm: LM | None = None,
    strict: bool = False,
    adapters: Mapping[str, Adapter] | None = None,
) -> Artifact:
    """Load an artifact from its JSON text (artifacts with side files need :func:`load`)."""
    data = schema.parse_text(text, source="artifact text")
    return _from_data(data, base_dir=None, source="artifact text", program=program, lm=lm, strict=strict, adapters=adapters)


def _from_data(
    data: dict[str, Any],
    *,
    base_dir: Path | None,
    source: str,
    program: Module | None,
    lm: LM | None,
    strict: bool,
    adapters: Mapping[str, Adapter] | None,
) -> Artifact:
    if program is not None and not isinstance(program, Module):
        hint = f"; pass an instance: program={program.__name__}()" if isinstance(program, type) else ""
        raise ArtifactError(f"program must be an oobleck Module instance, got {program!r}{hint}")
    doc = schema.validate(data, source=source)
    names = [r.name for r in doc.predictors]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{source} lists a predictor name twice: {names}")
    files = SideFiles.read_from(base_dir, doc.files, source=source)
    built = {r.name: build_predictor(r, files, source=source, strict=strict, adapters=adapters) for r in doc.predictors}
    if program is None:
        program = Builder(built, files, source).node(doc.program, "program")
        if not isinstance(program, Module):
            raise ArtifactError(f"{source}: the program graph's root must be a module or predictor")
        found = [n for n, _ in program.named_predictors()]
        if found != names:
            raise ArtifactError(f"{source}: the program graph holds predictors {found} but the file lists {names}")
    else:
        reattach(program, doc, built, source)
        apply_extras(doc.program, program, files, source)
    if lm is not None:
        program.set_lm(lm)
    if doc.provenance:
        program.__dict__["provenance"] = dict(doc.provenance)
    return Artifact(program, doc, files=files, source=source)


# ---------------------------------------------------------------- the loaded program


class Artifact:
    """A loaded artifact: a plain, thread-safe callable around the rebuilt program.

    Attributes:
        program: the Module (rebuilt from the file, or yours when loaded with ``program=``).
        predictors: every predictor by name (read-only mapping); each is callable on its own.
        provenance: what the optimizer recorded (name, settings, seed, data hashes, scores...).
        metadata: what the saver passed as ``metadata=``.
        templates: the prompt templates stored in the file, by predictor.
        lm_identities: the LM identity each predictor was saved with (None when it had none).
        class_path: the import path of the program's class (information only, never imported).
        oobleck_version: the version that wrote the file.
        schema_version: the artifact format version.
        files: the verified side files.
        source: where it was loaded from.

    Example:
        >>> qa = oobleck.load("qa.json", lm=oobleck.LocalLM())       # doctest: +SKIP
        >>> qa(question="Capital of France?").answer                 # doctest: +SKIP
    """

    def __init__(self, program: Module, doc: schema.ArtifactDoc, *, files: SideFiles, source: str) -> None:
        self.program = program
        self.predictors: Mapping[str, Predict] = types.MappingProxyType(dict(program.named_predictors()))
        self.provenance: dict[str, Any] = dict(doc.provenance)
        self.metadata: dict[str, Any] = dict(doc.metadata)
        self.templates: Mapping[str, list[Message]] = types.MappingProxyType(
            {r.name: [Message(role=m.role, content=m.content) for m in r.template] for r in doc.predictors}
        )
        self.lm_identities: Mapping[str, dict[str, str] | None] = types.MappingProxyType(
            {r.name: r.lm for r in doc.predictors}
        )
        root = doc.program
        self.class_path: str | None = getattr(root, "class_", None)
        self.oobleck_version = doc.oobleck_version
        self.schema_version = doc.schema_version
        self.files = files
        self.source = source

    @property
    def runnable(self) -> bool:
        """Whether ``artifact(**inputs)`` runs the whole program (False for a user class loaded alone)."""
        return not isinstance(self.program, FrozenModule)

    @property
    def input_names(self) -> list[str] | None:
        """The program's input names when they are known from the file (one predictor), else None."""
        if len(self.predictors) == 1:
            return list(next(iter(self.predictors.values())).signature.input_fields)
        return None

    def __call__(self, **inputs: Any) -> Any:
        """Run the program on ``inputs`` (the LM comes from ``load(lm=)`` or ``oobleck.context``)."""
        return self.program(**inputs)

    async def acall(self, **inputs: Any) -> Any:
        """Run the program from async code."""
        return await self.program.acall(**inputs)

    def render(self, **inputs: Any) -> list[Message]:
        """The exact messages a single-call program sends for ``inputs`` (no LM call)."""
        return _messages_for(self, None, inputs)

    def render_calls(self, **inputs: Any) -> list[RenderedCall]:
        """The messages of every predictor call the program makes (dry run, no LM call)."""
        return self.program.render_calls(**inputs)

    def parse(self, text: str, *, predictor: str | None = None) -> Prediction:
        """Parse a completion (e.g. from your own OpenAI call) the way the predictor would."""
        p = _pick(self.predictors, predictor)
        return Prediction(p.resolve_adapter().parse(p.signature, text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the artifact again (same provenance and metadata)."""
        return save(self.program, path, provenance=self.provenance, metadata=self.metadata)

    def to_dict(self) -> dict[str, Any]:
        """The artifact as JSON data."""
        return to_dict(self.program, provenance=self.provenance, metadata=self.metadata)

    def __repr__(self) -> str:
        names = ", ".join(self.predictors)
        return f"Artifact({self.class_path or type(self.program).__name__}, predictors=[{names}], source={self.source!r})"


# ---------------------------------------------------------------- exporting prompts


class _ExportTarget:
    """Stands in for an LM when exporting a request for an OpenAI-compatible server."""

    identity: ClassVar[dict[str, str]] = {"backend": "export"}

    def __init__(self) -> None:
        from oobleck.lm.base import Capabilities

        self.capabilities = Capabilities(json_schema=True, logprobs=True, n=True)


def _pick(predictors: Mapping[str, Predict], name: str | None) -> Predict:
    if name is not None:
        if name not in predictors:
            raise ArtifactError(f"no predictor {name!r}; the program has {list(predictors)}")
        return predictors[name]
    if len(predictors) == 1:
        return next(iter(predictors.values()))
    raise ArtifactError(f"the program has several predictors {list(predictors)}; pass predictor=NAME")


def _source(source: Artifact | Module | str | os.PathLike[str]) -> tuple[Module, Mapping[str, Predict]]:
    if isinstance(source, Artifact):
        return source.program, source.predictors
    if isinstance(source, Module):
        return source, dict(source.named_predictors())
    if isinstance(source, (str, os.PathLike)):
        art = load(source)
        return art.program, art.predictors
    raise ArtifactError(f"expected an Artifact, a Module or an artifact path, got {type(source).__name__}")


def _messages_for(source: Any, predictor: str | None, inputs: Mapping[str, Any]) -> list[Message]:
    program, predictors = _source(source)
    if predictor is not None or len(predictors) == 1:
        return _pick(predictors, predictor).render(**inputs)
    if isinstance(program, FrozenModule):
        raise ArtifactError(f"the program has several predictors {list(predictors)}; pass predictor=NAME")
    return program.render(**inputs)


def export_messages(
    source: Artifact | Module | str | os.PathLike[str],
    inputs: Mapping[str, Any] | None = None,
    /,
    *,
    predictor: str | None = None,
    **more_inputs: Any,
) -> list[dict[str, str]]:
    """The exact chat messages for ``inputs`` as plain OpenAI-style dicts (no LM call).

    Args:
        source: a loaded Artifact, a Module, or an artifact path.
        inputs: the input values (or pass them as keywords).
        predictor: which predictor, for programs with several.

    Returns:
        ``[{"role": "system", "content": ...}, ...]``, ready for ``client.chat.completions.create``.

    Example:
        >>> msgs = export_messages("qa.json", question="2+2?")                          # doctest: +SKIP
        >>> openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=msgs)  # doctest: +SKIP
    """
    values = {**(inputs or {}), **more_inputs}
    return [m.model_dump() for m in _messages_for(source, predictor, values)]


def export_request(
    source: Artifact | Module | str | os.PathLike[str],
    inputs: Mapping[str, Any] | None = None,
    /,
    *,
    model: str,
    predictor: str | None = None,
    **more_inputs: Any,
) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for one predictor call.

    Messages plus the predictor's decoding config and the adapter's stop sequences or JSON
    ``response_format``; parse the reply with :meth:`Artifact.parse`.

    Example:
        >>> kwargs = export_request(art, question="2+2?", model="gpt-4o-mini")   # doctest: +SKIP
        >>> reply = client.chat.completions.create(**kwargs)                     # doctest: +SKIP
        >>> art.parse(reply.choices[0].message.content).answer                  # doctest: +SKIP
    """
    from oobleck.lm import _compat

    _, predictors = _source(source)
    p = _pick(predictors, predictor)
    values = {**(inputs or {}), **more_inputs}
    p.render(**values)  # checks the inputs
    request = p._request(p.resolve_adapter(), _ExportTarget(), values)  # type: ignore[arg-type]
    return _compat.to_params(request, model, {})
