"""Exporting prompts: the exact messages or OpenAI request of a predictor call, for your own client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from oobleck.artifact._graph import FrozenModule
from oobleck.artifact._load import Artifact, load, pick
from oobleck.errors import ArtifactError
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

    Messages plus the predictor's decoding config and the adapter's stop sequences or JSON
    ``response_format``; parse the reply with :meth:`Artifact.parse`.

    Example:
        >>> kwargs = export_request(art, question="2+2?", model="gpt-4o-mini")   # doctest: +SKIP
        >>> reply = client.chat.completions.create(**kwargs)                     # doctest: +SKIP
        >>> art.parse(reply.choices[0].message.content).answer                  # doctest: +SKIP
    """
    from oobleck.lm import _chat_wire

    _, predictors = _source(source)
    p = pick(predictors, predictor)
    values = {**(inputs or {}), **more_inputs}
    p.render(**values)  # checks the inputs
    # _ExportTarget has only what _request reads of an LM (identity, capabilities), not complete().
    request = p._request(p.resolve_adapter(), _ExportTarget(), values)  # type: ignore[arg-type]
    return _chat_wire.to_params(request, model, {})
