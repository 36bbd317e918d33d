"""Loading: untrusted JSON to a checked, callable :class:`Artifact` (predictors rebuilt or re-attached)."""

from __future__ import annotations

import os
import types
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oobleck._files import ModelPolicy, read_regular
from oobleck.adapters import NO_LM_REASON, adapter_from_name
from oobleck.adapters.base import Adapter
from oobleck.adapters.template import ADAPTERS
from oobleck.artifact import _schema as schema
from oobleck.artifact._graph import Builder, FrozenModule, apply_extras, call_load_extra, check_module_types
from oobleck.artifact._save import save, to_dict
from oobleck.artifact._side_files import SideFiles
from oobleck.errors import ArtifactError, ConfigError, SignatureError
from oobleck.example import Example, Prediction
from oobleck.lm._policy import EXTRA_ALLOWED, decoding_problem, refused_extra_keys
from oobleck.lm.base import LM
from oobleck.lm.types import LMRequest, Message
from oobleck.module import Module, RenderedCall
from oobleck.predict import Predict
from oobleck.signature import Signature
from oobleck.tool import binding

__all__ = ["Artifact", "ArtifactWarning", "load", "loads"]


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
    # The adapter the stored template was rendered with; the predictor keeps it only if it was
    # named (an "auto" adapter is chosen for the LM in use at each call).
    adapter = _adapter(record.adapter, adapters, where)
    auto = is_auto(record.adapter)
    _check_config(record.config, where)
    try:
        LMRequest.model_validate({"messages": [], **record.config})
        predictor = Predict(
            signature,
            demos=[Example(d) for d in record.demos],
            adapter=None if auto else adapter,
            max_retries=record.max_retries,
            **record.config,
        )
    except (ConfigError, ValueError) as exc:
        raise ArtifactError(f"{where} has an invalid decoding config {record.config}: {exc}") from None
    if not auto:
        predictor.adapter_reason = record.adapter.reason
    if record.extra is not None:
        call_load_extra(predictor, record.extra, files, where)
    return predictor


def check_rendering(
    record: schema.PredictorRecord,
    predictor: Predict,
    *,
    source: str,
    strict: bool,
    adapters: Mapping[str, Adapter] | None,
) -> None:
    """Compare the stored template with the one the rebuilt predictor renders now.

    Run once the whole program is rebuilt: a module's ``load_extra`` may still shape its
    predictors (ReAct binds its tools into the action's type).
    """
    where = f"{source}: predictor {record.name!r}"
    adapter = _adapter(record.adapter, adapters, where)
    problem = None
    if record.adapter.version != adapter.version:
        problem = f"it was saved with adapter {adapter.name!r} version {record.adapter.version}, this one is {adapter.version}"
    else:
        try:
            rendered = predictor.template(adapter=adapter)
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


def is_auto(record: schema.AdapterRecord) -> bool:
    """Whether a predictor's adapter was left to the LM's capabilities when it was saved.

    Artifacts from before ``auto`` was recorded saved the default without an LM as the chat
    adapter with the reason :data:`~oobleck.adapters.NO_LM_REASON` ("follows the LM's
    capabilities once one is"): they load as ``auto``, as that reason promised. An adapter
    saved as the default for a known LM keeps loading as saved (its mode was saved resolved).
    """
    return record.auto or record.reason == NO_LM_REASON


def auto_reason(record: schema.AdapterRecord) -> str:
    """What an Artifact says of an ``auto`` adapter (what ``oobleck inspect`` shows)."""
    return (
        "auto: no adapter was named, so it is chosen for the LM in use at each call "
        f"(the stored template was rendered with {record.name!r}: {record.reason or 'the default'})"
    )


MAX_SAMPLES = 100
"""The most samples (``n``) an artifact may ask for per call."""


def _check_config(config: Mapping[str, Any], where: str) -> None:
    """The decoding config an artifact may set: the allow-listed knobs, within bounds."""
    extra = config.get("extra")
    if extra is not None:
        if not isinstance(extra, dict):
            raise ArtifactError(f"{where}: config.extra must be an object, got {type(extra).__name__}")
        refused = refused_extra_keys(extra)
        if refused:
            raise ArtifactError(
                f"{where}: config.extra sets {refused}, which an artifact may not set; it may set only "
                f"{sorted(EXTRA_ALLOWED)}. The model, endpoint, headers, timeouts and keys are yours: "
                "give them to your LM"
            )
    problem = decoding_problem(config)
    if problem:
        raise ArtifactError(f"{where}: config: {problem}")
    n = config.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > MAX_SAMPLES:
        raise ArtifactError(f"{where}: config.n is {n}; an artifact may ask for at most {MAX_SAMPLES} samples per call")


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
    if record.name not in ADAPTERS:
        raise ArtifactError(
            f"{where} uses adapter {record.name!r}, which this oobleck does not have; "
            f"pass load(..., adapters={{{record.name!r}: YourAdapter()}})"
        )
    try:
        return adapter_from_name(record.name, record.options)
    except ConfigError as exc:
        raise ArtifactError(f"{where}: bad options for adapter {record.name!r}: {exc}") from None


def reattach(program: Module, doc: schema.ArtifactDoc, built: Mapping[str, Predict], source: str) -> None:
    targets = program.named_predictors()
    have = [n for n, _ in targets]
    missing = [n for n in built if n not in have]
    unexpected = [n for n in have if n not in built]
    if missing or unexpected:
        raise ArtifactError(
            f"{source} does not fit {type(program).__name__}: the artifact has predictors {list(built)}, "
            f"the program has {have}"
            + (f"; missing in the program: {missing}" if missing else "")
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
        target.mode = loaded.mode
        target.calibration, target.score_norm = loaded.calibration, loaded.score_norm
        target.calibration_state = loaded.calibration_state
        target.soft_prompt = loaded.soft_prompt
        target.adapter_reason = loaded.adapter_reason


def _type_str(tp: Any) -> str:
    from oobleck import _types

    return _types.type_to_str(tp)


def _fields_str(fields: Sequence[tuple[str, str, str]]) -> str:
    ins = ", ".join(f"{n}: {t}" for n, k, t in fields if k == "input")
    outs = ", ".join(f"{n}: {t}" for n, k, t in fields if k == "output")
    return f"'{ins} -> {outs}'"


# ---------------------------------------------------------------- loading


def load(
    path: str | os.PathLike[str],
    *,
    program: Module | None = None,
    lm: LM | None = None,
    strict: bool = False,
    adapters: Mapping[str, Adapter] | None = None,
    module_types: Mapping[str, type[Module]] | None = None,
    allow_models: Sequence[str | os.PathLike[str]] = (),
    tools: Sequence[Any] | None = None,
) -> Artifact:
    """Load an artifact saved by :func:`save`.

    An artifact is data, never authority: loading reads only the file and the side files it
    lists inside its folder (no symlinks, no special files, sizes checked first), never the
    network, and the artifact cannot choose your LM, endpoint, headers, timeouts or keys
    (``config.extra`` is limited to sampling knobs). A model or embedder it names is used only
    when bundled with oobleck or listed in ``allow_models``.

    Args:
        path: the ``.json`` file.
        program: an instance of the class that built the artifact (e.g. ``MyProgram()``); the
            saved parameters are attached to its predictors by name, so its own ``forward``
            (with any control flow) runs. Without it the program is rebuilt from the file.
        lm: the LM every predictor uses (otherwise ``oobleck.context(lm=...)`` at call time).
        strict: raise instead of warning when a predictor renders differently than when saved
            (an edited file, or an adapter whose version changed).
        adapters: adapters by name, for artifacts that use an adapter oobleck does not ship.
        module_types: your module classes by type name (the class name, as saved), so they are
            rebuilt and run their ``forward``; any other module loads as a FrozenModule.
        allow_models: local model folders the artifact may name (e.g. a KNN embedder's
            ``model_path``); any other it names is an ArtifactError.
        tools: the functions (or :class:`~oobleck.Tool` objects) a saved agent calls; the
            artifact stores each by name and argument schema, never code, and a missing tool
            or one whose schema differs is an ArtifactError naming it.

    Returns:
        A callable :class:`Artifact`.

    Raises:
        ArtifactError: the file is missing, corrupt, from a newer oobleck, not an artifact,
            or does not fit ``program``.
    """
    source = str(path)
    # The bytes are dropped once decoded and the text once parsed: a large artifact is never
    # held three times over.
    text = schema.decode_text(read_regular(path, what="artifact", max_bytes=schema.MAX_BYTES), source=source)
    data = schema.parse_text(text, source=source)
    del text
    return _from_data(
        data,
        base_dir=Path(path).parent,
        source=source,
        program=program,
        lm=lm,
        strict=strict,
        adapters=adapters,
        module_types=module_types,
        models=ModelPolicy.from_paths(allow_models),
        tools=tools,
    )


def loads(
    text: str | bytes,
    *,
    program: Module | None = None,
    lm: LM | None = None,
    strict: bool = False,
    adapters: Mapping[str, Adapter] | None = None,
    module_types: Mapping[str, type[Module]] | None = None,
    allow_models: Sequence[str | os.PathLike[str]] = (),
    tools: Sequence[Any] | None = None,
) -> Artifact:
    """Load an artifact from its JSON text (artifacts with side files need :func:`load`).

    Takes the same options as :func:`load`.
    """
    data = schema.parse_text(text, source="artifact text")
    return _from_data(
        data,
        base_dir=None,
        source="artifact text",
        program=program,
        lm=lm,
        strict=strict,
        adapters=adapters,
        module_types=module_types,
        models=ModelPolicy.from_paths(allow_models),
        tools=tools,
    )


def _from_data(
    data: dict[str, Any],
    *,
    base_dir: Path | None,
    source: str,
    program: Module | None,
    lm: LM | None,
    strict: bool,
    adapters: Mapping[str, Adapter] | None,
    module_types: Mapping[str, type[Module]] | None,
    models: ModelPolicy,
    tools: Sequence[Any] | None = None,
) -> Artifact:
    if program is not None and not isinstance(program, Module):
        hint = f"; pass an instance: program={program.__name__}()" if isinstance(program, type) else ""
        raise ArtifactError(f"program must be an oobleck Module instance, got {program!r}{hint}")
    types_ = check_module_types(module_types)
    doc = schema.validate(data, source=source)
    names = [r.name for r in doc.predictors]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{source} lists a predictor name twice: {names}")
    files = SideFiles.read_from(base_dir, doc.files, source=source, models=models)
    built = {r.name: build_predictor(r, files, source=source, strict=strict, adapters=adapters) for r in doc.predictors}
    if program is None:
        with binding(tools):
            program = Builder(built, files, source, types_).node(doc.program, "program")
        if not isinstance(program, Module):
            raise ArtifactError(f"{source}: the program graph's root must be a module or predictor")
        found = [n for n, _ in program.named_predictors()]
        if found != names:
            raise ArtifactError(f"{source}: the program graph holds predictors {found} but the file lists {names}")
    else:
        reattach(program, doc, built, source)
        with binding(tools):
            apply_extras(doc.program, program, files, source)
    for record in doc.predictors:
        check_rendering(record, built[record.name], source=source, strict=strict, adapters=adapters)
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
        adapter_reasons: why each predictor got its adapter when it was saved (named, or the
            default for its backend's capabilities; None in artifacts that predate it), or,
            starting ``"auto:"``, that none was named so the LM in use at each call decides.
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
        self.adapter_reasons: Mapping[str, str | None] = types.MappingProxyType(
            {r.name: auto_reason(r.adapter) if is_auto(r.adapter) else r.adapter.reason for r in doc.predictors}
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

    def __call__(self, /, **inputs: Any) -> Any:
        """Run the program on ``inputs`` (the LM comes from ``load(lm=)`` or ``oobleck.context``)."""
        return self.program(**inputs)

    async def acall(self, /, **inputs: Any) -> Any:
        """Run the program from async code."""
        return await self.program.acall(**inputs)

    def render(self, /, **inputs: Any) -> list[Message]:
        """The exact messages a single-call program sends for ``inputs`` (no LM call)."""
        from oobleck.artifact._export import messages_for

        return messages_for(self, None, inputs)

    def render_calls(self, /, **inputs: Any) -> list[RenderedCall]:
        """The messages of every predictor call the program makes (dry run, no LM call)."""
        return self.program.render_calls(**inputs)

    def parse(self, text: str, *, predictor: str | None = None) -> Prediction:
        """Parse a completion (e.g. from your own OpenAI call) the way the predictor would."""
        p = pick(self.predictors, predictor)
        return Prediction(p.resolve_adapter().parse(p.signature, text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the artifact again (same provenance and metadata)."""
        return save(self.program, path, provenance=self.provenance, metadata=self.metadata)

    def to_dict(self) -> dict[str, Any]:
        """The artifact as JSON data."""
        return to_dict(self.program, provenance=self.provenance, metadata=self.metadata)

    def __repr__(self) -> str:
        names = ", ".join(self.predictors)
        return (
            f"Artifact({self.class_path or type(self.program).__name__}, predictors=[{names}], source={self.source!r})"
        )


def pick(predictors: Mapping[str, Predict], name: str | None) -> Predict:
    if name is not None:
        if name not in predictors:
            raise ArtifactError(f"no predictor {name!r}; the program has {list(predictors)}")
        return predictors[name]
    if len(predictors) == 1:
        return next(iter(predictors.values()))
    raise ArtifactError(f"the program has several predictors {list(predictors)}; pass predictor=NAME")
