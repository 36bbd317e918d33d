"""Callbacks: the start and end of every step a program or a compile takes, as events.

A callback is an object with ``on_start(event)`` and ``on_end(event)``; subclass
:class:`Callback` and override the per-kind methods you need (``on_lm_end``,
``on_module_start``, ...). Each :class:`Event` carries an ``id`` and the ``parent_id`` of the
step it ran inside, so a tree can be rebuilt (worker threads started by ``evaluate`` and the
optimizers carry their parent along with the context).

The kinds, and what ``inputs`` / ``outputs`` hold:

============  ==============================================  ======================================
kind          inputs                                          outputs (on the end event)
============  ==============================================  ======================================
module        the call's inputs (a ``Module`` or ``Predict``)  what it returned (a ``Prediction``)
lm            ``request``: the ``LMRequest``                  the ``LMResponse``
format        ``signature``, ``demos``, ``inputs``            the rendered ``list[Message]``
parse         ``signature``, ``text``                         the parsed values (a dict)
retrieval     ``query``, ``k``                                the ``list[Passage]``
tool          ``args``                                        the ``ToolResult``
optimizer     ``trainset``, ``valset`` (sizes), ``seed``      the compiled program
candidate     ``key``, ``rows`` (None: the whole valset)      its ``CandidateScores`` so far
trial         ``example``: one row run and scored             its ``RowOutcome`` (score, usage, ...)
============  ==============================================  ======================================

Register callbacks for the whole process with :func:`add` (and :func:`remove`), or for the code
inside a block with ``oobleck.context(callbacks=[...])``. A callback that raises is logged on the
``oobleck.callbacks`` logger and skipped: it never breaks the program it watches. Callbacks run
in the thread of the step, so a slow one slows the program; a thread-safe one is needed when
programs run in threads (``evaluate(num_threads=...)``, the optimizers).

When no callback is registered (and OpenTelemetry is not set up, see :mod:`oobleck.otel`), no
event is built at all.

Example:
    >>> from oobleck import FakeLM, Predict, context
    >>> from oobleck.callbacks import Callback
    >>> class Count(Callback):
    ...     def __init__(self):
    ...         self.kinds = []
    ...     def on_end(self, event):
    ...         self.kinds.append(event.kind)
    >>> seen = Count()
    >>> with context(callbacks=[seen]):
    ...     _ = Predict("question -> answer", lm=FakeLM([{"answer": "4"}]))(question="2+2?")
    >>> seen.kinds
    ['format', 'lm', 'parse', 'module']
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from oobleck.context import current
from oobleck.errors import ConfigError

__all__ = ["Callback", "Event", "EventKind", "Watcher", "add", "registered", "remove"]

log = logging.getLogger(__name__)

_NO_INPUTS: Mapping[str, Any] = MappingProxyType({})

EventKind = Literal["module", "lm", "format", "parse", "retrieval", "tool", "optimizer", "candidate", "trial"]
KINDS: tuple[EventKind, ...] = (
    "module",
    "lm",
    "format",
    "parse",
    "retrieval",
    "tool",
    "optimizer",
    "candidate",
    "trial",
)


class Event(NamedTuple):
    """One step starting or ending (immutable).

    A step's start and end events share ``id``; the end event also has ``outputs`` (or
    ``error``) and ``duration_s``. (A named tuple rather than a dataclass: a program makes
    several events per call, and a tuple is built several times faster.)

    Attributes:
        kind: what ran (see the table in :mod:`oobleck.callbacks`).
        id: unique in this process.
        parent_id: the id of the step this one ran inside, or None at the top.
        name: a short name: the module's class, the LM's model, the adapter's, tool's or
            optimizer's name, the candidate's key.
        instance: the object doing the work (the module, LM, adapter, retriever, tool,
            optimizer, the program being scored).
        inputs: what the step was given.
        outputs: what it produced (end events only; None when it raised).
        error: the exception it raised (end events only).
        started: wall-clock start (``time.time()``).
        duration_s: how long it took (end events only).
    """

    kind: EventKind
    id: str
    parent_id: str | None
    name: str
    instance: Any
    inputs: Mapping[str, Any] = _NO_INPUTS
    outputs: Any = None
    error: BaseException | None = None
    started: float = 0.0
    duration_s: float | None = None

    @property
    def ended(self) -> bool:
        """Whether this is an end event."""
        return self.duration_s is not None


@runtime_checkable
class Watcher(Protocol):
    """What the dispatcher needs from a callback: two methods (:class:`Callback` has both)."""

    def on_start(self, event: Event) -> None:
        """A step started."""
        ...

    def on_end(self, event: Event) -> None:
        """A step ended (``event.error`` is set when it raised)."""
        ...


class Callback:
    """A callback that does nothing: override the methods you need.

    ``on_start`` and ``on_end`` receive every event and hand it on to ``on_<kind>_start`` /
    ``on_<kind>_end`` (``on_lm_end``, ``on_trial_start``, ...); override either level.
    """

    def on_start(self, event: Event) -> None:
        """A step started; calls ``on_<kind>_start``."""
        getattr(self, f"on_{event.kind}_start")(event)

    def on_end(self, event: Event) -> None:
        """A step ended; calls ``on_<kind>_end``."""
        getattr(self, f"on_{event.kind}_end")(event)

    def on_module_start(self, event: Event) -> None:
        """A module (or Predict) was called."""

    def on_module_end(self, event: Event) -> None:
        """A module (or Predict) returned or raised."""

    def on_lm_start(self, event: Event) -> None:
        """A request is about to be sent to an LM."""

    def on_lm_end(self, event: Event) -> None:
        """An LM answered (``outputs`` is the LMResponse) or failed."""

    def on_format_start(self, event: Event) -> None:
        """An adapter is about to render messages."""

    def on_format_end(self, event: Event) -> None:
        """An adapter rendered messages."""

    def on_parse_start(self, event: Event) -> None:
        """An adapter is about to parse a completion."""

    def on_parse_end(self, event: Event) -> None:
        """An adapter parsed a completion (or raised ParseError)."""

    def on_retrieval_start(self, event: Event) -> None:
        """A Retrieve step is about to search."""

    def on_retrieval_end(self, event: Event) -> None:
        """A Retrieve step found its passages."""

    def on_tool_start(self, event: Event) -> None:
        """A tool is about to run."""

    def on_tool_end(self, event: Event) -> None:
        """A tool ran (``outputs`` is the ToolResult)."""

    def on_optimizer_start(self, event: Event) -> None:
        """A compile started."""

    def on_optimizer_end(self, event: Event) -> None:
        """A compile finished (``outputs`` is the compiled program)."""

    def on_candidate_start(self, event: Event) -> None:
        """An optimizer started scoring a candidate program."""

    def on_candidate_end(self, event: Event) -> None:
        """An optimizer finished scoring a candidate (on some rows, or all)."""

    def on_trial_start(self, event: Event) -> None:
        """One example is about to be run and scored."""

    def on_trial_end(self, event: Event) -> None:
        """One example was run and scored (``outputs`` is its RowOutcome)."""


_LOCK = threading.Lock()
_GLOBAL: tuple[Watcher, ...] = ()


def check(callback: Any) -> Watcher:
    """``callback`` if it has ``on_start`` and ``on_end``, else a ConfigError saying so."""
    if isinstance(callback, type):  # its methods are there, unbound: every step would fail on them
        raise ConfigError(
            f"a callback is an object, got the class {callback.__name__}; pass an instance: {callback.__name__}()"
        )
    if not (callable(getattr(callback, "on_start", None)) and callable(getattr(callback, "on_end", None))):
        raise ConfigError(
            f"a callback needs on_start(event) and on_end(event) methods, got {type(callback).__name__}; "
            "subclass oobleck.Callback and override the methods you need"
        )
    return callback  # type: ignore[no-any-return]


def add(callback: Watcher) -> None:
    """Register ``callback`` for every step in this process (until :func:`remove`).

    Raises:
        ConfigError: it lacks ``on_start`` / ``on_end``.
    """
    global _GLOBAL
    check(callback)
    with _LOCK:
        if not any(c is callback for c in _GLOBAL):
            _GLOBAL = (*_GLOBAL, callback)


def remove(callback: Watcher) -> None:
    """Unregister ``callback`` (nothing happens when it was not registered)."""
    global _GLOBAL
    with _LOCK:
        _GLOBAL = tuple(c for c in _GLOBAL if c is not callback)


def registered() -> tuple[Watcher, ...]:
    """The callbacks in force here: the process-wide ones, then the context's."""
    return _GLOBAL + current().callbacks


# ---- emitting (internal: the library's steps call `step`) ----

_PARENT: ContextVar[str | None] = ContextVar("oobleck_event_parent", default=None)
_IDS = itertools.count(1)


def _receivers() -> tuple[Watcher, ...]:
    found = _GLOBAL + current().callbacks
    # OpenTelemetry can only be set up by code that imported it: until then, nothing to check.
    if "opentelemetry.trace" in sys.modules:
        from oobleck import otel

        bridge = otel.bridge()
        if bridge is not None:
            found = (bridge, *found)
    return found


def _deliver(receivers: tuple[Watcher, ...], method: str, event: Event) -> None:
    for receiver in receivers:
        try:
            getattr(receiver, method)(event)
        except Exception:  # a callback never breaks the program it watches
            log.warning("callback %r failed in %s(%s event)", receiver, method, event.kind, exc_info=True)


class Step:
    """One step being watched: ``with step(...) as s: ...; s.done(outputs)`` (internal)."""

    __slots__ = ("_event", "_receivers", "_t0", "_token", "outputs")

    def __init__(self, receivers: tuple[Watcher, ...], event: Event) -> None:
        self._receivers = receivers
        self._event = event
        self.outputs: Any = None
        self._t0 = 0.0
        self._token: Token[str | None] | None = None

    @property
    def id(self) -> str | None:
        """The step's event id."""
        return self._event.id

    def done(self, outputs: Any) -> None:
        """Record what the step produced (sent with the end event)."""
        self.outputs = outputs

    def __enter__(self) -> Step:
        self._token = _PARENT.set(self._event.id)
        self._t0 = time.perf_counter()
        _deliver(self._receivers, "on_start", self._event)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = time.perf_counter() - self._t0
        if self._token is not None:
            _PARENT.reset(self._token)
        e = self._event
        end = Event(
            e.kind, e.id, e.parent_id, e.name, e.instance, e.inputs,
            None if exc is not None else self.outputs, exc, e.started, duration,
        )  # fmt: skip
        _deliver(self._receivers, "on_end", end)


class Unwatched:
    """The step when nobody watches: does nothing, shared by every call."""

    __slots__ = ()
    id = None

    def done(self, outputs: Any) -> None:
        pass

    def __enter__(self) -> Unwatched:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


UNWATCHED = Unwatched()


def step(kind: EventKind, name: str | None, instance: Any, inputs: Mapping[str, Any]) -> Step | Unwatched:
    """A context manager that sends ``kind``'s start and end events to the callbacks in force.

    ``name`` None: derived from ``instance`` (its ``name`` attribute, else its class name).
    When no callback is in force this returns a shared object that does nothing.
    """
    receivers = _receivers()
    if not receivers:
        return UNWATCHED
    if name is None:
        name = _name_of(kind, instance)
    event = Event(kind, f"{next(_IDS):x}", _PARENT.get(), name, instance, inputs, started=time.time())
    return Step(receivers, event)


def _name_of(kind: EventKind, instance: Any) -> str:
    if kind == "lm":
        identity = getattr(instance, "identity", None) or {}
        return str(identity.get("model") or identity.get("backend") or type(instance).__name__)
    own = getattr(instance, "name", None)
    if kind != "module" and isinstance(own, str) and own:
        return own
    return type(instance).__name__
