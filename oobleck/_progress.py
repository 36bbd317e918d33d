"""Progress bars for long work: evaluate, compile, index builds, soft-prompt training.

The one home of oobleck's bars, and the only module that imports tqdm. A :class:`Bar` shows
rows (program runs) done, the score so far, the LM calls and cache hits made, and tqdm's rate
and ETA. It is drawn only where someone can watch it: on a terminal (stderr is a TTY) or in a
notebook, and never when the caller passed ``progress=False``. tqdm is imported only when a bar
is actually drawn, so ``import oobleck`` never pays for it.

Bars do not nest: while one is open (a compile's), the evaluations inside it draw none, and
their runs advance the outer bar instead. The bar is also a trace recorder, so it counts
every LM call made under it, in worker threads too.

:func:`counter` is the plain kind, for work counted in its own units (documents embedded,
training steps): a bar of its own, drawn under the same conditions, also beneath a compile's.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from oobleck.trace import recording

if TYPE_CHECKING:
    from oobleck.lm.types import Usage
    from oobleck.trace import TraceEntry

__all__ = ["Bar", "Counter", "bar", "counter", "current", "on_terminal"]

#: Seconds between redraws (tqdm's default; tests set 0 to see every update).
MININTERVAL = 0.1

_CURRENT: contextvars.ContextVar[Bar | None] = contextvars.ContextVar("oobleck_progress", default=None)


def on_terminal() -> bool:
    """Whether a bar would be seen: stderr is a terminal, or the code runs in a notebook."""
    stream = sys.stderr
    try:
        if stream is not None and stream.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or odd stream
        return False
    return "ipykernel" in sys.modules


def _tqdm(total: int | None, desc: str, *, unit: str, initial: int = 0) -> Any:
    from tqdm.auto import tqdm  # the only place tqdm is imported

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        mininterval=MININTERVAL,
    )


def current() -> Bar | None:
    """The bar open here, if any (an evaluation inside a compile reports to it)."""
    return _CURRENT.get()


class Bar:
    """One tqdm bar plus the counters it shows (thread-safe).

    Args:
        total: the planned number of rows (an upper bound is fine; None: unknown).
        desc: the label on the left.
        score_label: what the score is called (``"score"``, ``"best"``).
    """

    def __init__(self, total: int | None, desc: str, *, score_label: str = "score") -> None:
        self._tqdm = _tqdm(total, desc, unit="row")
        self._lock = threading.Lock()
        self.score_label = score_label
        self.score: float | None = None
        self.calls = 0
        self.cache_hits = 0

    def add(self, entry: TraceEntry) -> None:
        """Count one predictor call (the trace-recorder protocol)."""
        with self._lock:
            self.calls += entry.usage.calls
            self.cache_hits += entry.usage.cache_hits

    def advance(self, rows: int = 1, *, score: float | None = None) -> None:
        """Mark ``rows`` more rows done and, when given, show ``score`` (percent)."""
        with self._lock:
            if score is not None:
                self.score = score
            self._tqdm.set_postfix_str(self._postfix(), refresh=False)
            self._tqdm.update(rows)

    def set_score(self, score: float) -> None:
        """Show a new score without advancing (e.g. a candidate's result)."""
        with self._lock:
            self.score = score
            self._tqdm.set_postfix_str(self._postfix(), refresh=True)

    def charge(self, usage: Usage) -> None:
        """One program run finished (the budget reports each run here)."""
        self.advance(1)

    def _postfix(self) -> str:
        parts = [] if self.score is None else [f"{self.score_label}={self.score:.1f}%"]
        parts.append(f"calls={self.calls}")
        if self.cache_hits:
            parts.append(f"hits={self.cache_hits}")
        return " ".join(parts)

    def close(self) -> None:
        """Remove the bar from the terminal."""
        self._tqdm.close()


@contextlib.contextmanager
def bar(total: int | None, desc: str, *, enabled: bool, score_label: str = "score") -> Iterator[Bar | None]:
    """Open a bar for the block when ``enabled``, on a terminal, and no bar is open already.

    Yields the bar, or None when none is drawn (callers then skip their updates).
    """
    if _CURRENT.get() is not None:
        yield None
        return
    with _drawn(enabled, lambda: Bar(total, desc, score_label=score_label)) as opened:
        if opened is None:
            yield None
            return
        token = _CURRENT.set(opened)
        try:
            with recording(opened):
                yield opened
        finally:
            _CURRENT.reset(token)


class Counter(Protocol):
    """What a :func:`counter` bar offers (a tqdm bar)."""

    def update(self, n: int = 1) -> Any:
        """Mark ``n`` more units done."""

    def set_postfix(self, **values: Any) -> None:
        """Show ``values`` after the bar (``loss=...``)."""


@contextlib.contextmanager
def counter(total: int, desc: str, *, enabled: bool, unit: str = "it", initial: int = 0) -> Iterator[Counter | None]:
    """Open a plain bar for the block when ``enabled`` and on a terminal (or in a notebook).

    Unlike :func:`bar` it counts its own ``unit`` (not rows or LM calls) and is drawn even
    beneath an open compile bar: training steps or documents embedded inside a compile.

    Args:
        total: the planned number of units.
        desc: the label on the left.
        enabled: False draws nothing (the caller's ``progress=False``).
        unit: what is counted (``"doc"``, ``"step"``).
        initial: units already done (a resumed run).

    Yields:
        The bar, or None when none is drawn (callers then skip their updates).
    """
    with _drawn(enabled, lambda: _tqdm(total, desc, unit=unit, initial=initial)) as opened:
        yield opened


class _Closable(Protocol):
    def close(self) -> None: ...


_B = TypeVar("_B", bound=_Closable)


@contextlib.contextmanager
def _drawn(enabled: bool, make: Callable[[], _B]) -> Iterator[_B | None]:
    # Every bar's rule: drawn only when enabled and watched; closed when the block ends.
    opened: _B | None = None
    if enabled and on_terminal():
        with contextlib.suppress(ImportError):  # tqdm is a core dependency, but a stripped install still works
            opened = make()
    try:
        yield opened
    finally:
        if opened is not None:
            opened.close()
