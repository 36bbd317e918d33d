"""Exporting prompts: the exact messages or OpenAI request of a predictor call, for your own client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from oobleck.artifact._graph import FrozenModule
from oobleck.artifact._load import Artifact, load, pick
from oobleck.errors import ArtifactError
from oobleck.lm._policy import DECODING_KEYS
from oobleck.lm.types import Message
from oobleck.module import Module
from oobleck.predict import Predict

__all__ = ["export_messages", "export_request"]


class _ExportTarget:
    """Stands in for an LM when exporting a request for an OpenAI-compatible server."""

    identity: ClassVar[dict[str, str]] = {"backend": "export"}

    def __init__(self) -> None:
        from oobleck.lm.base import Capabilities

        self.capabilities = Capabilities(json_schema=True, logprobs=True, n=True)


def _source(source: Artifact | Module | str | os.PathLike[str]) -> tuple[Module, Mapping[str, Predict]]:
    if isinstance(source, Artifact):
        return source.program, source.predictors
    if isinstance(source, Module):
        return source, dict(source.named_predictors())
    if isinstance(source, (str, os.PathLike)):
        art = load(source)
        return art.program, art.predictors
    raise ArtifactError(f"expected an Artifact, a Module or an artifact path, got {type(source).__name__}")


def messages_for(source: Any, predictor: str | None, inputs: Mapping[str, Any]) -> list[Message]:
    program, predictors = _source(source)
    if predictor is not None or len(predictors) == 1:
        return pick(predictors, predictor).render(**inputs)
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
        **more_inputs: more input values, by name.

    Returns:
        ``[{"role": "system", "content": ...}, ...]``, ready for ``client.chat.completions.create``.

    A predictor saved with its adapter ``auto`` (none named) renders for the LM set on it
    (``load(..., lm=...)``) or in ``oobleck.context``, as it would when called; with no LM,
    in the default for no LM (chat field markers).

    Example:
        >>> msgs = export_messages("qa.json", question="2+2?")                          # doctest: +SKIP
        >>> openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=msgs)  # doctest: +SKIP
    """
    values = {**(inputs or {}), **more_inputs}
    return [m.model_dump() for m in messages_for(source, predictor, values)]


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

    Messages plus the adapter's stop sequences or JSON ``response_format``, and the decoding
    the program was scored with, pinned so that a server's own defaults (often
    ``temperature=1``) cannot change it: the predictor's saved config first, then
    ``oobleck.context(temperature=...)`` if one is in force, then the decoding its compile
    recorded (``provenance["decoding"]``: the compile LM's ``temperature``, ``max_tokens``,
    ...). ``temperature`` is always set; when nothing recorded one (a program that was never
    compiled, or compiled on a backend left at its server's default) it is ``0``, the greedy
    decoding oobleck's backends and CLI use by default. Parse the reply with
    :meth:`Artifact.parse`.

    Example:
        >>> kwargs = export_request(art, question="2+2?", model="gpt-4o-mini")   # doctest: +SKIP
        >>> reply = client.chat.completions.create(**kwargs)                     # doctest: +SKIP
        >>> art.parse(reply.choices[0].message.content).answer                  # doctest: +SKIP
    """
    from oobleck.lm import _chat_wire

    program, predictors = _source(source)
    p = pick(predictors, predictor)
    values = {**(inputs or {}), **more_inputs}
    p.render(**values)  # checks the inputs
    # _ExportTarget has only what _request reads of an LM (identity, capabilities), not complete().
    request = p._request(p.resolve_adapter(), _ExportTarget(), values)  # type: ignore[arg-type]
    name = next(n for n, q in predictors.items() if q is p)
    provenance = source.provenance if isinstance(source, Artifact) else getattr(program, "provenance", None)
    recorded = _recorded_decoding(provenance, name)
    params = _chat_wire.to_params(request, model, recorded)
    params.setdefault("temperature", 0.0)
    return params


def _recorded_decoding(provenance: Any, name: str) -> dict[str, Any]:
    """The decoding a compile recorded for predictor ``name`` ({} when none was recorded).

    Provenance is data like the rest of an artifact: the record is held to the rules of a
    saved decoding config (known knobs, valid values, at most ``MAX_SAMPLES`` samples).

    Raises:
        ArtifactError: the record is not a mapping of valid decoding values.
    """
    from oobleck.artifact._load import _check_config
    from oobleck.lm.types import LMRequest

    decoding = provenance.get("decoding") if isinstance(provenance, Mapping) else None
    if decoding is None or (isinstance(decoding, Mapping) and decoding.get(name) is None):
        return {}
    found = decoding.get(name) if isinstance(decoding, Mapping) else decoding
    where = f"provenance.decoding of predictor {name!r}"
    if not isinstance(found, Mapping) or set(found) - set(DECODING_KEYS):
        raise ArtifactError(f"{where}: expected an object of {list(DECODING_KEYS)}, got {str(found)[:80]!r}")
    _check_config(found, where)
    try:
        LMRequest.model_validate({"messages": [], **found})
    except ValueError as exc:
        raise ArtifactError(f"{where} is not a valid decoding {dict(found)}: {exc}") from None
    return dict(found)
