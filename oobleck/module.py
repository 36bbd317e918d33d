"""Module: the base class of composable LM programs (structure, copying, saving, rendering).

A program's parameters are its predictors' instructions (inside their signatures) and demos
(see :mod:`oobleck.predict`); optimizers produce copies with other parameters.
"""

from __future__ import annotations

import contextvars
import copy as _copy
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oobleck.errors import ConfigError, InputError
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.lm.types import Message, Usage
from oobleck.trace import UsageMeter, recording

if TYPE_CHECKING:
    from oobleck.predict import Predict
    from oobleck.streaming import StreamChunk

__all__ = ["Module", "RenderedCall"]


@dataclass(frozen=True, slots=True)
class RenderedCall:
    """The messages one predictor would send during a dry run.

    Attributes:
        predictor: the predictor's name inside the program (``"self"`` for a bare Predict).
        messages: the exact messages.
        adapter: the name of the adapter that rendered them.
        adapter_reason: why that adapter: named on the predictor, in the context, or the
            default for the LM's capabilities.
    """

    predictor: str
    messages: list[Message]
    adapter: str = ""
    adapter_reason: str = ""


# When set, Predict records its messages here and answers with placeholders instead of
# calling an LM (see Module.render_calls).
RENDERING: contextvars.ContextVar[list[tuple[Predict, list[Message]]] | None] = contextvars.ContextVar(
    "oobleck_rendering", default=None
)


class Module:
    """Base class of LM programs: subclass it and write ``forward``.

    Example:
        >>> class QA(Module):
        ...     def __init__(self):
        ...         self.answer = Predict("question -> answer")
        ...     def forward(self, question):
        ...         return self.answer(question=question)
    """

    #: Set by optimizers on the programs they return: optimizer, settings, seed, data hashes,
    #: scores, LM calls and tokens. Saved in artifacts.
    provenance: dict[str, Any] | None = None
    #: Set by optimizers: what the compile cost, all its resumed sessions included (calls that
    #: reached a backend vs cache hits). Not saved: it depends on the cache's state.
    compile_usage: Usage | None = None

    def forward(self, /, **inputs: Any) -> Any:
        """The program's logic; override it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, ...)")

    async def aforward(self, /, **inputs: Any) -> Any:
        """The async form of forward; by default runs ``forward`` in a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.forward, **inputs)

    def __call__(self, /, *args: Any, **inputs: Any) -> Any:
        """Run ``forward`` on the inputs (by name), with the call's usage on a Prediction result."""
        if args:
            raise InputError(f"{type(self).__name__} takes inputs by name, e.g. program(question=...)")
        _check_not_self(self, inputs)
        meter = UsageMeter()
        with recording(meter):
            result = self.forward(**inputs)
        return result.with_usage(meter.usage) if isinstance(result, Prediction) else result

    async def acall(self, /, **inputs: Any) -> Any:
        """Call the program from async code (``await program.acall(question=...)``)."""
        _check_not_self(self, inputs)
        meter = UsageMeter()
        with recording(meter):
            result = await self.aforward(**inputs)
        return result.with_usage(meter.usage) if isinstance(result, Prediction) else result

    # ---- streaming ----

    def stream(self, /, **inputs: Any) -> Iterator[StreamChunk | Prediction]:
        """Run the program, yielding each output field's text as it is decoded, then the result.

        Yields :class:`~oobleck.StreamChunk` items (predictor name, field name, new text) in
        the order the text arrives, predictor after predictor, then, last, exactly what
        ``program(**inputs)`` returns (same requests, parse, cache entries, usage and budget
        accounting). The program runs in a worker thread that carries the caller's context
        (``oobleck.context``, budgets, traces).

        What streams token by token: backends that stream (LocalLM, OpenAILM, FakeLM,
        TransformersLM) through adapters that can read a partial answer (ChatAdapter's field
        markers, JSON answers' string values). Everything else still arrives, once, whole,
        after the answer is parsed: a backend without streaming, a cache hit, ``n > 1``, a
        label chosen by score mode (the label is picked whole from scores, never decoded),
        JSON numbers, lists and objects (given once complete), ``Name: value`` lines. Never
        an error for want of streaming. See :mod:`oobleck.streaming`.

        Stopping early (``break``, ``close()``, or dropping the iterator) cuts the backend's
        stream at its next piece of text and starts no further LM call; nothing partial is
        cached. The worker never runs more than one chunk ahead of the consumer, so a consumer
        that pauses pauses the reading of the answer (and the backend's per-call timeout still
        bounds the whole answer). A predictor called several times (ReAct's steps, BestOfN's
        attempts) streams each call in turn under the same name.

        Raises:
            OobleckError: whatever the call raises, after the chunks sent before it.

        Example:
            >>> from oobleck import FakeLM, Predict
            >>> qa = Predict("question -> answer", lm=FakeLM([{"answer": "Paris"}], stream_chunk=2))
            >>> *chunks, pred = qa.stream(question="Capital of France?")
            >>> [(c.field, c.text) for c in chunks], pred.answer
            ([('answer', 'P'), ('answer', 'ar'), ('answer', 'is')], 'Paris')
        """
        from oobleck import streaming

        _check_not_self(self, inputs)
        return streaming.stream(self, inputs)

    def astream(self, /, **inputs: Any) -> AsyncIterator[StreamChunk | Prediction]:
        """The async form of :meth:`stream` (runs ``await program.acall(**inputs)``).

        Close it when you stop early (``async with contextlib.aclosing(program.astream(...))``):
        an async iterator abandoned mid-way is only closed when it is collected.
        """
        from oobleck import streaming

        _check_not_self(self, inputs)
        return streaming.astream(self, inputs)

    # ---- structure ----

    def named_predictors(self) -> list[tuple[str, Predict]]:
        """Every Predict inside this program with its attribute path, in definition order."""
        found: list[tuple[str, Predict]] = []
        seen: set[int] = set()
        for name, value in self._children():
            _collect(name, value, found, seen)
        return found

    def predictors(self) -> list[Predict]:
        """Every Predict inside this program."""
        return [p for _, p in self.named_predictors()]

    def _children(self) -> Iterator[tuple[str, Any]]:
        yield from vars(self).items()

    def copy(self) -> Module:
        """A copy whose predictors (demos, instructions, config) can change independently.

        LMs and adapters are shared, not copied.
        """
        new = _copy.copy(self)
        for name, value in vars(self).items():
            setattr(new, name, _copy_value(value))
        return new

    def save(self, path: str | os.PathLike[str], **options: Any) -> None:
        """Freeze this program into a JSON artifact (see :func:`oobleck.artifact.save`)."""
        from oobleck.artifact import save

        save(self, path, **options)

    def load(self, path: str | os.PathLike[str], **options: Any) -> Module:
        """Attach the parameters saved in an artifact to this program's predictors, by name.

        Checks everything before changing anything; returns self. See
        :func:`oobleck.artifact.load` (raises ArtifactError when names or fields differ).
        """
        from oobleck.artifact import load

        load(path, program=self, **options)
        return self

    def set_lm(self, lm: LM | None) -> Module:
        """Set the LM of every predictor (in place) and return self."""
        for p in self.predictors():
            p.lm = lm
        return self

    # ---- rendering ----

    def render_calls(self, /, **inputs: Any) -> list[RenderedCall]:
        """Dry-run the program and return the messages each predictor would send.

        No LM is called: each predictor answers with placeholder values of the right types,
        so steps after the first show where earlier outputs would go.
        """
        _check_not_self(self, inputs)
        names = {id(p): n for n, p in self.named_predictors()}
        record: list[tuple[Predict, list[Message]]] = []
        token = RENDERING.set(record)
        try:
            self.forward(**inputs)
        finally:
            RENDERING.reset(token)
        calls = []
        for p, msgs in record:
            adapter, reason = p.adapter_choice()
            calls.append(RenderedCall(names.get(id(p), "?"), msgs, adapter.name, reason))
        return calls

    def render(self, /, **inputs: Any) -> list[Message]:
        """The exact messages a single-step program sends for ``inputs``, without calling an LM.

        Raises:
            ConfigError: the program makes more than one call (use ``render_calls``).
        """
        calls = self.render_calls(**inputs)
        if len(calls) != 1:
            raise ConfigError(
                f"{type(self).__name__} made {len(calls)} predictor calls; use render_calls() to see each"
            )
        return calls[0].messages

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in self.named_predictors())
        return f"{type(self).__name__}({inner})"


def _check_not_self(program: Module, inputs: Mapping[str, Any]) -> None:
    """Refuse an input named ``self``: no signature has one, and ``forward(self, ...)`` cannot take it."""
    if "self" in inputs:
        raise InputError(
            f"{type(program).__name__} got an input named 'self', which no field can have; "
            f"its inputs are passed by their field names, e.g. program(question=...)"
        )


def _collect(name: str, value: Any, found: list[tuple[str, Predict]], seen: set[int]) -> None:
    if isinstance(value, Module):
        for sub, p in value.named_predictors():
            if id(p) not in seen:
                seen.add(id(p))
                # A predictor is its own only predictor: it is named by the attribute holding it.
                found.append((name if p is value else f"{name}.{sub}", p))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _collect(f"{name}[{i}]", item, found, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect(f"{name}[{key!r}]", item, found, seen)


def _copy_value(value: Any) -> Any:
    if isinstance(value, Module):
        return value.copy()
    if isinstance(value, list):
        return [_copy_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy_value(v) for k, v in value.items()}
    return value
