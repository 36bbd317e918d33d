"""Per-run recording: which predictor was called with what, and what it cost.

``with oobleck.trace() as t:`` collects one :class:`TraceEntry` per predictor call made inside
the block, including calls in worker threads that carry the context. Nothing is global: a
trace exists only while its block runs, and nested traces each see the calls inside them.

A :class:`Recorder` is the seam under it: anything with ``add(entry)``, made active for a block
with :func:`recording`, receives each finished call (a Trace keeps them, a program's usage
meter sums them, evaluation and the budget count them). Three ways to watch, by what you need:

- a **recorder** (or ``trace()``): the finished calls of a block, with what they produced and
  cost; what code that *acts* on calls uses (metrics reading a trace, usage accounting);
- a **callback** (:mod:`oobleck.callbacks`): the start and end of every step (modules, LM
  calls, adapters, retrieval, tools, optimizer candidates and trials) as a tree, for logging
  and tracing (:mod:`oobleck.otel` is one);
- ``oobleck.history(n)`` (:mod:`oobleck.history`): the last LM calls of the process, printed
  for a person.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from oobleck.lm.types import Message, Usage

__all__ = ["Recorder", "Trace", "TraceEntry", "Traced", "recording", "trace"]


class Traced(Protocol):
    """The step a trace entry records: a ``Predict``, a ``Retrieve`` step, or a module of yours.

    Recorders compare steps by identity (``entry.predictor is program.answer``) or by type;
    the trace itself needs nothing from them but that they can be called.
    """

    def __call__(self, *args: Any, **inputs: Any) -> Any:
        """Run the step."""
        ...


@dataclass(slots=True)
class TraceEntry:
    """One predictor call, or one search by a ``Retrieve`` step.

    Attributes:
        predictor: the step that made the call (the Predict, or the Retrieve step).
        inputs: the inputs it was given.
        outputs: the parsed outputs, or None when it failed.
        messages: the messages sent.
        raw: the completion text.
        usage: what this attempt cost. A parse-repair retry is an entry of its own (its
            usage has ``retries=1``), so summing the entries counts every call once.
        error: the exception, when the call failed.
    """

    predictor: Traced
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    messages: list[Message]
    raw: str | None
    usage: Usage
    error: BaseException | None = None


@dataclass
class Trace:
    """The entries recorded inside one ``trace()`` block (thread-safe)."""

    entries: list[TraceEntry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: TraceEntry) -> None:
        """Record one call."""
        with self._lock:
            self.entries.append(entry)

    @property
    def usage(self) -> Usage:
        """The summed usage of every recorded call."""
        total = Usage()
        for e in list(self.entries):
            total = total + e.usage
        return total

    def __iter__(self) -> Iterator[TraceEntry]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)


class Recorder(Protocol):
    """Anything that receives finished calls: a Trace, a usage meter, a progress bar.

    Make one active for a block with :func:`recording`; every predictor attempt (a
    parse-repair retry is an entry of its own) and every ``Retrieve`` search inside the block,
    in this thread or in workers that carry the context, calls ``add`` once, in the thread that
    made the call, so a recorder used with threads must be thread-safe. Recorders nest: all
    the active ones receive each entry. An exception in ``add`` propagates to the call (a
    recorder is part of the run, unlike a callback).

    Example:
        >>> from oobleck import FakeLM, Predict
        >>> class Tokens:
        ...     def __init__(self):
        ...         self.total = 0
        ...     def add(self, entry):
        ...         self.total += entry.usage.total_tokens
        >>> counted = Tokens()
        >>> with recording(counted):
        ...     _ = Predict("question -> answer", lm=FakeLM([{"answer": "4"}]))(question="2+2?")
        >>> counted.total > 0
        True
    """

    def add(self, entry: TraceEntry) -> None:
        """Take one finished call."""
        ...


class UsageMeter:
    """Sums usage for one program call (internal; see Module.__call__)."""

    __slots__ = ("_lock", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self._lock = threading.Lock()

    def add(self, entry: TraceEntry) -> None:
        with self._lock:
            self.usage = self.usage + entry.usage


_RECORDERS: contextvars.ContextVar[tuple[Recorder, ...]] = contextvars.ContextVar("oobleck_recorders", default=())


def active() -> bool:
    """Whether any recorder would receive an entry (lets callers skip building one)."""
    return bool(_RECORDERS.get())


def emit(entry: TraceEntry) -> None:
    """Give one finished call to every active recorder."""
    for recorder in _RECORDERS.get():
        recorder.add(entry)


@contextlib.contextmanager
def recording(recorder: Recorder) -> Iterator[None]:
    """Make ``recorder`` active for the code inside the block (what ``trace()`` is built on).

    Args:
        recorder: anything with ``add(entry)`` (see :class:`Recorder`).
    """
    token = _RECORDERS.set(_RECORDERS.get() + (recorder,))
    try:
        yield
    finally:
        _RECORDERS.reset(token)


@contextlib.contextmanager
def trace() -> Iterator[Trace]:
    r"""Record every predictor call made inside the block.

    Example:
        >>> from oobleck import FakeLM, Predict, context, trace
        >>> with context(lm=FakeLM(["[[ ## answer ## ]]\n4"])), trace() as t:
        ...     _ = Predict("question -> answer")(question="2+2?")
        >>> len(t), t.entries[0].outputs
        (1, {'answer': '4'})
    """
    t = Trace()
    with recording(t):
        yield t
