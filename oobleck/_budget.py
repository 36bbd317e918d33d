"""Budgets, cost estimates and checkpoints shared by evaluate and the optimizers.

A :class:`Budget` limits the LM calls and tokens one compile may spend. Spending is counted
from :class:`~oobleck.lm.types.Usage` (calls that reached a backend; cache hits are free).
The budget is checked before each program run, never inside one: a run that has started
finishes, and a new run starts only if the largest run seen so far still fits. With several
threads, up to ``num_threads - 1`` runs may already be under way when the limit is reached.

A :class:`Checkpoint` is a JSON file an optimizer rewrites as it makes progress, so a compile
that was interrupted (or stopped by its budget) resumes where it left off. Together with an
LM cache, a resumed compile pays for no call twice.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oobleck._version import __version__
from oobleck.errors import BudgetExceededError, ConfigError
from oobleck.example import Example, to_data
from oobleck.lm.types import Usage

if TYPE_CHECKING:
    from oobleck.module import Module

__all__ = ["Budget", "Checkpoint", "CostEstimate", "active", "calls_per_run", "rows_sha256", "tokens_per_run"]

log = logging.getLogger("oobleck.optimize")

CHECKPOINT_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What a compile is planned to cost, worked out without calling any LM.

    Attributes:
        program_runs: the most program runs the compile may make.
        lm_calls: the most LM calls (program runs times calls per run; parse retries excluded).
        min_lm_calls: the fewest LM calls it can make if nothing is cached.
        prompt_tokens: a rough estimate of the prompt tokens of those calls (4 characters a token).
        breakdown: program runs per phase (e.g. ``{"bootstrap": 40, "validation": 220}``).
    """

    program_runs: int
    lm_calls: int
    min_lm_calls: int
    prompt_tokens: int
    breakdown: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON data."""
        return asdict(self)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v} runs" for k, v in self.breakdown.items())
        return (
            f"up to {self.lm_calls} LM calls (at least {self.min_lm_calls}), ~{self.prompt_tokens} prompt tokens; "
            f"{self.program_runs} program runs ({parts})"
        )


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


def usage_dict(usage: Usage) -> dict[str, int]:
    """Usage as JSON data, without wall time (it would make provenance irreproducible)."""
    return {
        "calls": usage.calls,
        "retries": usage.retries,
        "cache_hits": usage.cache_hits,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
    }


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: the same data always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rows_sha256(rows: Iterable[Mapping[str, Any]] | None) -> str | None:
    """SHA-256 of the canonical JSON of ``rows`` (None for None)."""
    if rows is None:
        return None
    return hashlib.sha256(canonical_json([to_data(r) for r in rows]).encode()).hexdigest()


def _dry_run(program: Module, example: Example | None) -> list[Any] | None:
    """The calls of one dry run, or None (with a warning) when the program cannot dry-run."""
    if example is None:
        return None
    try:
        return program.render_calls(**example.inputs())
    except Exception as exc:  # noqa: BLE001 - a program whose logic needs real outputs
        warnings.warn(
            f"could not dry-run {type(program).__name__} for the cost estimate ({type(exc).__name__}: {exc}); "
            "calls and tokens are estimated from its predictors' templates instead",
            stacklevel=3,
        )
        return None


def calls_per_run(program: Module, example: Example | None) -> int:
    """How many predictor calls one run makes, from a dry render (no LM is called).

    A program that cannot dry-run (its logic needs real outputs) counts each predictor once,
    and a warning says so.
    """
    calls = _dry_run(program, example)
    if calls is not None:
        return max(len(calls), 1)
    return max(len(program.named_predictors()), 1)


def tokens_per_run(program: Module, example: Example | None) -> int:
    """A rough prompt-token count of one run (4 characters a token), from a dry render.

    A program that cannot dry-run is estimated from its predictors' templates plus the
    example's input text, never reported as free.
    """
    if example is None:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calls_per_run, run on the same example, has warned
        calls = _dry_run(program, example)
    if calls is not None:
        return sum(len(m.content) for c in calls for m in c.messages) // 4
    inputs = sum(len(str(v)) for v in example.inputs().values())
    return sum(sum(len(m.content) for m in p.template()) + inputs for p in program.predictors()) // 4


class Checkpoint:
    """A JSON file recording an optimizer's progress, so an interrupted compile can resume.

    The file names the compile it belongs to (a fingerprint of the optimizer settings, seed,
    data and program); resuming with anything else raises ConfigError instead of mixing runs.

    Args:
        path: the file (None disables checkpointing).
        fingerprint: what identifies the compile.
    """

    def __init__(self, path: str | os.PathLike[str] | None, fingerprint: Mapping[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = hashlib.sha256(canonical_json(dict(fingerprint)).encode()).hexdigest()

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no file yet.

        Raises:
            ConfigError: the file is unreadable or belongs to another compile.
        """
        if self.path is None or not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read checkpoint {str(self.path)!r} ({exc}); delete it to start over") from exc
        if not isinstance(data, dict) or data.get("schema_version") != CHECKPOINT_SCHEMA:
            raise ConfigError(f"{str(self.path)!r} is not an oobleck checkpoint (schema {CHECKPOINT_SCHEMA})")
        if data.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"checkpoint {str(self.path)!r} was written by a different compile (other settings, seed, data "
                "or program); delete it or pass another checkpoint= path"
            )
        log.info("resuming from checkpoint %s", self.path)
        state = data.get("state")
        return state if isinstance(state, dict) else {}

    def save(self, state: Mapping[str, Any]) -> None:
        """Atomically replace the file with ``state`` (JSON data)."""
        if self.path is None:
            return
        body = {
            "schema_version": CHECKPOINT_SCHEMA,
            "oobleck_version": __version__,
            "fingerprint": self.fingerprint,
            "state": state,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body, sort_keys=True, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


def usage_from_dict(data: Mapping[str, Any] | None) -> Usage:
    """Rebuild usage saved by :func:`usage_dict`."""
    return Usage(**dict(data or {}))
