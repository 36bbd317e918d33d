"""Budgets: limits on the LM calls and tokens one compile may spend.

Spending is counted from :class:`~oobleck.lm.types.Usage` (calls that reached a backend; cache
hits are free). The budget is checked before each program run, never inside one: a run that has
started finishes, and a new run starts only if the largest run seen so far still fits. With
several threads, up to ``num_threads - 1`` runs may already be under way when the limit is
reached. An optimizer makes its budget active for the compile; :func:`active` is how evaluate
and the optimizers' runs find it.

Cost estimates live in :mod:`oobleck._estimate`, checkpoints in :mod:`oobleck._checkpoint`.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator

from oobleck.errors import BudgetExceededError, ConfigError
from oobleck.lm.types import Usage

__all__ = ["Budget", "active"]


class Budget:
    """Limits on the LM calls and tokens one compile may spend.

    Args:
        max_lm_calls: the most calls that may reach a backend (None: no limit).
        max_tokens: the most prompt plus completion tokens (None: no limit).
        spent: what earlier sessions of the same compile already spent (from a checkpoint).
    """

    def __init__(self, *, max_lm_calls: int | None = None, max_tokens: int | None = None, spent: Usage | None = None):
        for name, value in (("max_lm_calls", max_lm_calls), ("max_tokens", max_tokens)):
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0 or None, got {value}")
        self.max_lm_calls = max_lm_calls
        self.max_tokens = max_tokens
        self.spent = spent or Usage()
        self.stopped = False
        self._largest_calls = 0
        self._largest_tokens = 0
        self._lock = threading.Lock()
        #: Called with each run's usage after it is charged (a compile's progress bar).
        self.on_charge: Callable[[Usage], None] | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return self.max_lm_calls is not None or self.max_tokens is not None

    def check(self) -> None:
        """Raise BudgetExceededError if another program run might not fit."""
        with self._lock:
            calls, tokens = self.spent.calls, self.spent.total_tokens
            over = _over(calls, self._largest_calls, self.max_lm_calls) or _over(
                tokens, self._largest_tokens, self.max_tokens
            )
            if over:
                self.stopped = True
        if over:
            raise BudgetExceededError(
                f"budget reached: {calls} LM calls of max_lm_calls={self.max_lm_calls}, "
                f"{tokens} tokens of max_tokens={self.max_tokens}"
            )

    def charge(self, usage: Usage) -> None:
        """Add what one program run cost."""
        with self._lock:
            self.spent = self.spent + usage
            self._largest_calls = max(self._largest_calls, usage.calls)
            self._largest_tokens = max(self._largest_tokens, usage.total_tokens)
        if self.on_charge is not None:
            self.on_charge(usage)

    @contextlib.contextmanager
    def activate(self) -> Iterator[Budget]:
        """Make this budget the one :func:`oobleck.evaluate.evaluate` checks, inside the block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def _over(spent: int, largest_run: int, limit: int | None) -> bool:
    # Stop at the limit, and also when the largest run seen so far would cross it.
    return limit is not None and (spent >= limit or spent + largest_run > limit)


_ACTIVE: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("oobleck_budget", default=None)


def active() -> Budget | None:
    """The budget in force here, if an optimizer set one."""
    return _ACTIVE.get()
