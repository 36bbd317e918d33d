"""Defaults that flow with the code that runs, not through globals.

``with oobleck.context(lm=..., adapter=..., cache=...)`` sets defaults on a ContextVar for the
code inside the block (and for worker threads started through :func:`oobleck.parallel.run`,
which copy the context). Resolution order everywhere: an explicit argument, then the attribute
on the module, then the context, then a :class:`~oobleck.errors.ConfigError` naming all three.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from oobleck.errors import ConfigError

if TYPE_CHECKING:
    from oobleck.adapters.base import Adapter
    from oobleck.callbacks import Watcher
    from oobleck.lm.base import LM
    from oobleck.lm.types import CachePolicy
    from oobleck.retrieve.passage import Retriever

__all__ = ["Settings", "context", "current"]


@dataclass(frozen=True, slots=True)
class Settings:
    """The defaults in force for the current context.

    Attributes:
        lm: the LM predictors use when they have none of their own.
        adapter: the prompt format for predictors that name none. Unset, each predictor's
            format follows its LM's capabilities (:func:`oobleck.adapters.default_adapter`:
            a constrained JSON answer where the backend takes a JSON schema, ChatAdapter
            elsewhere).
        cache: the cache policy for every call ("on", "read", "write", "off").
        max_retries: parse-repair retries for predictors that do not set their own.
        sample_index: which sample of each request to ask for (part of the cache key, never
            sent); optimizers raise it to get fresh samples in later rounds.
        retriever: the retriever ``Retrieve`` steps use when they have none of their own.
        on_truncation: what an answer cut short at ``max_tokens`` (``finish_reason ==
            "length"``) does: ``"warn"`` (default) keeps a parsed answer and records a warning
            in ``Prediction.warnings`` and the log; ``"error"`` makes it a ParseError (retried
            like any parse failure when ``max_retries`` allows).
        temperature: the sampling temperature of predictors whose config names none (BestOfN
            and Refine raise it for attempts after the first).
        hint: text added to every predictor's system message (Refine's feedback on the
            previous attempt); never part of demos.
        callbacks: callbacks that see every step inside the block (:mod:`oobleck.callbacks`),
            after those registered with ``oobleck.callbacks.add``.
    """

    lm: LM | None = None
    adapter: Adapter | None = None
    cache: CachePolicy = "on"
    max_retries: int | None = None
    sample_index: int = 0
    retriever: Retriever | None = None
    on_truncation: Literal["warn", "error"] = "warn"
    temperature: float | None = None
    hint: str | None = None
    callbacks: tuple[Watcher, ...] = ()


_SETTINGS: contextvars.ContextVar[Settings] = contextvars.ContextVar("oobleck_settings", default=Settings())
_FIELDS = {f.name for f in dataclasses.fields(Settings)}


def current() -> Settings:
    """The settings in force here."""
    return _SETTINGS.get()


@contextlib.contextmanager
def context(**overrides: Any) -> Iterator[Settings]:
    r"""Override defaults for the code inside the ``with`` block.

    Args:
        **overrides: any of ``lm``, ``adapter``, ``cache``, ``max_retries``, ``sample_index``,
            ``retriever``, ``on_truncation``, ``temperature``, ``hint``, ``callbacks``.

    Raises:
        ConfigError: an unknown setting name.

    Example:
        >>> from oobleck import FakeLM, Predict, context
        >>> with context(lm=FakeLM(["[[ ## answer ## ]]\n4"])):
        ...     Predict("question -> answer")(question="2+2?").answer
        '4'
    """
    unknown = set(overrides) - _FIELDS
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    if "on_truncation" in overrides and overrides["on_truncation"] not in ("warn", "error"):
        raise ConfigError(f"on_truncation must be 'warn' or 'error', got {overrides['on_truncation']!r}")
    if "cache" in overrides and overrides["cache"] not in ("on", "read", "write", "off"):
        raise ConfigError(f"cache must be 'on', 'read', 'write' or 'off', got {overrides['cache']!r}")
    if "callbacks" in overrides:
        from oobleck.callbacks import check

        overrides["callbacks"] = tuple(check(c) for c in overrides["callbacks"] or ())
    token = _SETTINGS.set(dataclasses.replace(_SETTINGS.get(), **overrides))
    try:
        yield _SETTINGS.get()
    finally:
        _SETTINGS.reset(token)
