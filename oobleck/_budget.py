"""Budgets: limits on the LM calls and tokens one compile may spend, reserved before each call.

A limit is a cap. Every request is reserved against the active budget before it is handed to a
backend (:func:`sending`, called by ``Predict`` for each attempt it sends: first tries, parse
repairs, label scoring and calibration calls) and every transport retry a backend makes is
reserved before it is sent (:func:`extend`, called by ``OpenAILM``'s retry loops). A
reservation that does not fit raises :class:`~oobleck.errors.BudgetExceededError` and nothing
is sent, so across threads, retries and nested compiles the calls that reach a backend never
exceed ``max_lm_calls``. When the call returns, its reservation is settled to what it cost
(a cache hit costs nothing and gives its reservation back).

Tokens are reserved as an upper bound of the request (:func:`token_bound`: its text's UTF-8
bytes, an overhead per message, plus ``max_tokens`` per sample), then settled to the usage the
backend reports. The bound holds for a request that sets ``max_tokens`` (a backend tokenizes no
text into more tokens than bytes); for one that sets none, :data:`UNBOUNDED_COMPLETION` tokens
are assumed, and the cap holds only if completions stay within it.

When a reservation does not fit while other calls are in flight, it waits for them to settle
(a cache hit or a token estimate above the actual gives room back) and is refused only when
nothing in flight could make it fit. A budget made while another is active (a compile inside a
compile, as :class:`~oobleck.optimize.Auto` runs its members) reserves in both.

The budget is also checked before each program run (:meth:`Budget.check`): a run starts only
if the largest run seen so far still fits, so a run is rarely cut short. With a
:class:`~oobleck._checkpoint.Ledger` every reservation and settlement is written to a file as
it happens, so a compile killed mid-run and resumed counts every call that was sent.

Cost estimates live in :mod:`oobleck._estimate`, checkpoints in :mod:`oobleck._checkpoint`.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from oobleck.errors import BudgetExceededError, ConfigError, LMError
from oobleck.lm.types import LMRequest, Usage

if TYPE_CHECKING:
    from oobleck._checkpoint import Ledger

__all__ = [
    "UNBOUNDED_COMPLETION",
    "Budget",
    "Ticket",
    "active",
    "extend",
    "failed_usage",
    "received",
    "sending",
    "settle",
    "token_bound",
]

UNBOUNDED_COMPLETION = 4096
"""Completion tokens reserved for a request that sets no ``max_tokens``."""

MESSAGE_OVERHEAD = 16
"""Tokens reserved per message beyond its text (role markers of a chat template)."""

# One lock for every budget: a reservation takes from a budget and all its parents at once, and
# an LM call takes far longer than the bookkeeping, so one lock costs nothing measurable.
_LOCK = threading.Condition(threading.Lock())
_WAIT_S = 0.5  # a waiting reservation looks again at least this often


class Budget:
    """Limits on the LM calls and tokens one compile may spend.

    Args:
        max_lm_calls: the most calls that may reach a backend (None: no limit).
        max_tokens: the most prompt plus completion tokens (None: no limit).
        spent: what earlier sessions of the same compile already spent (from a checkpoint).
        parent: a budget every reservation is also made in (a compile inside a compile).
        ledger: where each reservation and settlement is written as it happens (a compile
            with a checkpoint), so a killed compile counts what it sent.
    """

    def __init__(
        self,
        *,
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
        spent: Usage | None = None,
        parent: Budget | None = None,
        ledger: Ledger | None = None,
    ):
        for name, value in (("max_lm_calls", max_lm_calls), ("max_tokens", max_tokens)):
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0 or None, got {value}")
        self.max_lm_calls = max_lm_calls
        self.max_tokens = max_tokens
        #: What was spent: every settled call of this compile (earlier sessions included).
        self.spent = spent or Usage()
        #: Whether the budget refused something (the compile stopped early).
        self.stopped = False
        #: Why, when it did.
        self.reason: str | None = None
        self.parent = parent
        self.ledger = ledger
        self._held_calls = 0
        self._held_tokens = 0
        self._largest_calls = 0
        self._largest_tokens = 0
        #: Called with each run's usage after it finished (a compile's progress bar).
        self.on_charge: Callable[[Usage], None] | None = None
        #: Requests that got an answer from the LM (a cache hit included), and requests that
        #: failed before any answer came (the first such error kept): a compile in which every
        #: request failed has nothing to show (see ``Optimizer.compile``).
        self.answered = 0
        self.failed = 0
        self.first_failure: BaseException | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set (here or in a parent)."""
        return (
            self.max_lm_calls is not None
            or self.max_tokens is not None
            or (self.parent is not None and self.parent.limited)
        )

    @property
    def held(self) -> tuple[int, int]:
        """(calls, tokens) reserved for calls in flight, not settled yet."""
        with _LOCK:
            return self._held_calls, self._held_tokens

    def _chain(self) -> list[Budget]:
        chain: list[Budget] = []
        b: Budget | None = self
        while b is not None:
            chain.append(b)
            b = b.parent
        return chain

    # ---- before a program run ----

    def check(self) -> None:
        """Raise BudgetExceededError if another program run might not fit.

        A run starts only when the largest run seen so far still fits beside what was spent
        and what calls in flight hold. The cap itself is kept by the reservations.
        """
        with _LOCK:
            for b in self._chain():
                calls = b.spent.calls + b._held_calls
                tokens = b.spent.total_tokens + b._held_tokens
                if _over(calls, b._largest_calls, b.max_lm_calls):
                    reason = f"max_lm_calls={b.max_lm_calls} reached ({calls} LM calls sent or in flight"
                    reason += f"; a run may take {b._largest_calls} more)" if calls < (b.max_lm_calls or 0) else ")"
                elif _over(tokens, b._largest_tokens, b.max_tokens):
                    reason = f"max_tokens={b.max_tokens} reached ({tokens} tokens spent or in flight"
                    reason += f"; a run may take {b._largest_tokens} more)" if tokens < (b.max_tokens or 0) else ")"
                else:
                    continue
                self._stop(reason, b)
                break
            else:
                return
        raise BudgetExceededError(f"budget reached: {reason}")

    def finished_run(self, usage: Usage) -> None:
        """Note what one program run cost (its calls were settled as they returned)."""
        with _LOCK:
            for b in self._chain():
                b._largest_calls = max(b._largest_calls, usage.calls)
                b._largest_tokens = max(b._largest_tokens, usage.total_tokens)
        if self.on_charge is not None:
            self.on_charge(usage)

    def charge(self, usage: Usage) -> None:
        """Add spending that was not reserved (counted as one program run)."""
        with _LOCK:
            for b in self._chain():
                b.spent = b.spent + usage
                b._largest_calls = max(b._largest_calls, usage.calls)
                b._largest_tokens = max(b._largest_tokens, usage.total_tokens)
                if b.ledger is not None:
                    b.ledger.record(0, 0, usage)
        if self.on_charge is not None:
            self.on_charge(usage)

    def note_outcome(self, answered: bool, error: BaseException | None) -> None:
        """Count one request as answered, or as failed with ``error`` (here and in parents)."""
        if not answered and not isinstance(error, Exception):
            return  # an interruption is not the LM's failure
        with _LOCK:
            for b in self._chain():
                if answered:
                    b.answered += 1
                else:
                    b.failed += 1
                    if b.first_failure is None:
                        b.first_failure = error

    # ---- reservations ----

    def reserve(self, request: LMRequest | None = None, *, calls: int = 1, tokens: int | None = None) -> Ticket:
        """Reserve ``calls`` (and the request's token bound) before sending; settle the ticket after.

        Args:
            request: the request about to be sent (its tokens are bounded by :func:`token_bound`
                when a token limit is set).
            calls: the calls reserved.
            tokens: the tokens reserved (default: the request's bound, when a limit needs it).

        Raises:
            BudgetExceededError: the reservation does not fit, and nothing in flight could
                make room (nothing is sent).
        """
        ticket = Ticket(self._chain())
        ticket.take(calls, _tokens_for(ticket.chain, request, tokens))
        return ticket

    def _fits(self, calls: int, tokens: int) -> bool:
        return not (
            _exceeds(self.spent.calls + self._held_calls + calls, self.max_lm_calls)
            or _exceeds(self.spent.total_tokens + self._held_tokens + tokens, self.max_tokens)
        )

    def _could_fit(self, calls: int, tokens: int, own: tuple[int, int]) -> bool:
        """Whether it would fit if every other call in flight gave its reservation back."""
        return not (
            _exceeds(self.spent.calls + own[0] + calls, self.max_lm_calls)
            or _exceeds(self.spent.total_tokens + own[1] + tokens, self.max_tokens)
        )

    def _why(self, calls: int, tokens: int) -> str:
        """Which limit a further ``calls`` and ``tokens`` would cross, and by how much."""
        used_calls = self.spent.calls + self._held_calls
        used_tokens = self.spent.total_tokens + self._held_tokens
        if _exceeds(used_calls + calls, self.max_lm_calls) or (
            self.max_lm_calls is not None and used_calls >= self.max_lm_calls
        ):
            return f"max_lm_calls={self.max_lm_calls} reached ({used_calls} LM calls sent or in flight)"
        return (
            f"max_tokens={self.max_tokens} reached ({used_tokens} tokens spent or in flight; the next call "
            f"may take up to {tokens} more)"
        )

    def _stop(self, reason: str, at: Budget) -> None:
        """Mark this budget and its parents up to ``at`` (the one whose limit refused) stopped."""
        for b in self._chain():
            if not b.stopped:
                b.stopped, b.reason = True, reason
            if b is at:
                break

    @contextlib.contextmanager
    def activate(self) -> Iterator[Budget]:
        """Make this budget the one :func:`active` finds, inside the block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


class Ticket:
    """What one request reserved in a budget and its parents, until it is settled.

    Transport retries of the same request add to it (:meth:`take`); :meth:`settle` replaces the
    reservation by what the call cost. Settling twice does nothing the second time.
    """

    def __init__(self, chain: list[Budget]) -> None:
        self.chain = chain
        #: Calls reserved so far (every one was, or is about to be, sent).
        self.calls = 0
        self.tokens = 0
        self.settled = False
        #: The backend's usage, settled on exit unless something more exact settles first.
        self.fallback: Usage | None = None
        #: Whether the LM answered (:func:`received`), even if the answer did not parse.
        self.answered = False
        self._waiting = False

    def take(self, calls: int, tokens: int) -> None:
        """Reserve ``calls`` and ``tokens`` more, waiting while calls in flight could make room.

        Raises:
            BudgetExceededError: it does not fit, and nothing in flight could make room.
        """
        with _LOCK:
            while True:
                short = next((b for b in self.chain if not b._fits(calls, tokens)), None)
                if short is None:
                    break
                own = (self.calls, self.tokens)
                # Only calls in flight against the budget that is short can make room in it.
                others = any(t is not self and not t._waiting and short in t.chain for t in _IN_FLIGHT)
                if not others or not short._could_fit(calls, tokens, own):
                    reason = short._why(calls, tokens)
                    self.chain[0]._stop(reason, short)
                    raise BudgetExceededError(
                        f"budget reached: {reason}; the {'retry' if self.calls else 'call'} was not sent",
                        attempts=self.calls,
                    )
                self._waiting = True
                _LOCK.wait(_WAIT_S)
                self._waiting = False
            for b in self.chain:
                b._held_calls += calls
                b._held_tokens += tokens
                if b.ledger is not None:
                    b.ledger.record(calls, tokens, None)
            self.calls += calls
            self.tokens += tokens
            _IN_FLIGHT.add(self)

    def settle(self, usage: Usage) -> None:
        """Replace the reservation by what the call cost (``usage``)."""
        with _LOCK:
            if self.settled:
                return
            self.settled = True
            _IN_FLIGHT.discard(self)
            for b in self.chain:
                b._held_calls -= self.calls
                b._held_tokens -= self.tokens
                b.spent = b.spent + usage
                if b.ledger is not None:
                    b.ledger.record(-self.calls, -self.tokens, usage)
            _LOCK.notify_all()


_IN_FLIGHT: set[Ticket] = set()


def _exceeds(total: int, limit: int | None) -> bool:
    return limit is not None and total > limit


def _over(spent: int, largest_run: int, limit: int | None) -> bool:
    # Stop at the limit, and also when the largest run seen so far would cross it.
    return limit is not None and (spent >= limit or spent + largest_run > limit)


def token_bound(request: LMRequest) -> int:
    """An upper bound of the tokens ``request`` costs: prompt bytes, per-message overhead, completion.

    A scoring request (``request.score``) sends the prompt once per completion it scores.
    """
    prompt = sum(len(m.content.encode("utf-8")) + MESSAGE_OVERHEAD for m in request.messages)
    options = (request.score,) if isinstance(request.score, str) else request.score
    if options:
        longest = max(len(str(o).encode("utf-8")) for o in options)
        return len(options) * (prompt + longest + MESSAGE_OVERHEAD)
    completion = request.max_tokens if request.max_tokens is not None else UNBOUNDED_COMPLETION
    return prompt + completion * max(request.n or 1, 1)


def _tokens_for(chain: list[Budget], request: LMRequest | None, tokens: int | None) -> int:
    if tokens is not None:
        return tokens
    if request is None or all(b.max_tokens is None for b in chain):
        return 0
    return token_bound(request)


_ACTIVE: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("oobleck_budget", default=None)
_TICKET: contextvars.ContextVar[tuple[Ticket, LMRequest] | None] = contextvars.ContextVar(
    "oobleck_budget_ticket", default=None
)


def active() -> Budget | None:
    """The budget in force here, if an optimizer set one."""
    return _ACTIVE.get()


@contextlib.contextmanager
def sending(request: LMRequest) -> Iterator[Ticket | None]:
    """Reserve ``request`` in the active budget for the block that sends it, then settle.

    Inside the block, what the call cost is given by :func:`settle` (exact: the caller's own
    accounting) or :func:`received` (the backend's usage, used when nothing settles). After an
    error the ticket is settled with what the error says was sent (:func:`failed_usage`).
    Without an active budget this does nothing and yields None.

    Raises:
        BudgetExceededError: the call does not fit (nothing is sent).
    """
    budget = _ACTIVE.get()
    if budget is None:
        yield None
        return
    ticket = budget.reserve(request)
    token = _TICKET.set((ticket, request))
    error: BaseException | None = None
    try:
        yield ticket
    except BaseException as exc:
        error = exc
        ticket.settle(failed_usage(exc, ticket))
        raise
    finally:
        _TICKET.reset(token)
        ticket.settle(ticket.fallback if ticket.fallback is not None else Usage(calls=ticket.calls))
        budget.note_outcome(ticket.answered, error)


def received(usage: Usage) -> None:
    """The backend's usage for the request being sent (settles it unless :func:`settle` does)."""
    current = _TICKET.get()
    if current is not None:
        current[0].fallback = usage
        current[0].answered = True


def settle(usage: Usage) -> None:
    """Settle the reservation of the request being sent with what it cost."""
    current = _TICKET.get()
    if current is not None:
        current[0].settle(usage)


def extend() -> None:
    """Reserve one more attempt of the request being sent (a transport retry), before sending it.

    Raises:
        BudgetExceededError: the retry does not fit (its ``attempts`` are the calls sent so far).
    """
    current = _TICKET.get()
    if current is not None:
        ticket, request = current
        ticket.take(1, _tokens_for(ticket.chain, request, None))


def failed_usage(exc: BaseException, ticket: Ticket) -> Usage:
    """What a request that raised cost.

    An LMError or a refused retry says how many attempts were sent; any other error was raised
    before sending (a backend refusing the request); an interruption (KeyboardInterrupt) may
    have come mid-call, so what was reserved counts as sent.
    """
    if isinstance(exc, LMError):
        sent = max(exc.attempts, 1)
        return Usage(calls=sent, retries=sent - 1)
    if isinstance(exc, BudgetExceededError):
        return Usage(calls=exc.attempts, retries=max(exc.attempts - 1, 0))
    if isinstance(exc, Exception):
        return Usage()
    return Usage(calls=ticket.calls)
