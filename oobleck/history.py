"""The last LM calls this process made, kept in a small ring buffer to look at.

Every request a predictor sends (first tries, parse repairs, scoring requests, cache hits) is
remembered as an :class:`LMCall`; only the newest :data:`SIZE` are kept, so memory stays
bounded however long the process runs. ``oobleck.history(n)`` prints the last ``n`` readably
(the messages by role, the answer, tokens, latency, cached or not) and returns them, like
DSPy's ``inspect_history``. It is safe to call from any thread while others make calls.

The history is for a person at a prompt; to collect calls in code use ``oobleck.trace()``
(per block) or a callback (:mod:`oobleck.callbacks`).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from oobleck.lm.types import LMRequest, LMResponse, Message, Usage

if TYPE_CHECKING:
    from oobleck.lm.base import LM

__all__ = ["SIZE", "LMCall", "clear", "history", "record"]

#: How many calls are kept (the oldest are dropped first).
SIZE = 100


@dataclass(frozen=True, slots=True)
class LMCall:
    """One LM call, as the history keeps it.

    Attributes:
        at: when it was sent (``time.time()``).
        model: the model that answered (as the backend reported it), else the LM's model name.
        messages: the messages sent.
        responses: the text of each completion (empty when the call failed; the scored labels'
            log-probabilities for a scoring request).
        usage: its tokens and counts (a cache hit costs none).
        latency_s: how long the call took, seen from the caller.
        cached: whether the answer came from a cache.
        error: ``"ExceptionType: message"`` when the call failed, else None.
    """

    at: float
    model: str
    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    usage: Usage
    latency_s: float
    cached: bool
    error: str | None = None

    def __repr__(self) -> str:
        return f"LMCall(model={self.model!r}, {_cost(self)}, {_seconds(self.latency_s)})"

    def render(self) -> str:
        """The call as readable text: a header, each message under its role, the response."""
        when = time.strftime("%H:%M:%S", time.localtime(self.at))
        head = f"{when}  {self.model}  {_seconds(self.latency_s)}  {_cost(self)}"
        parts = [head, "=" * min(len(head), 100)]
        for m in self.messages:
            parts += [f"[{m.role}]", m.content, ""]
        if self.error is not None:
            parts += ["[error]", self.error]
        for i, text in enumerate(self.responses):
            parts += [f"[response {i + 1}]" if len(self.responses) > 1 else "[response]", text]
        return "\n".join(parts)


def _seconds(s: float) -> str:
    """A latency people read: ``1.24 s``, ``312 ms``, ``41 µs``."""
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 0.001:
        return f"{s * 1000:.0f} ms"
    return f"{s * 1e6:.0f} µs"


def _cost(call: LMCall) -> str:
    u = call.usage
    if call.cached:
        return f"cached ({u.cached_tokens} tokens when first made)" if u.cached_tokens else "cached"
    return f"{u.prompt_tokens} prompt + {u.completion_tokens} completion tokens"


_LOCK = threading.Lock()
# Kept as raw records (the request and response are immutable), turned into LMCall only when
# someone looks: recording stays a tuple and an append on every call.
_Raw = tuple[float, float, LMRequest, "LMResponse | None", "str | None", str]
_CALLS: collections.deque[_Raw] = collections.deque(maxlen=SIZE)


def record(
    lm: LM, request: LMRequest, response: LMResponse | None, error: BaseException | None, latency: float
) -> None:
    """Remember one call (the library calls this for every request a predictor sends)."""
    fallback = ""
    if response is None or not response.model:
        identity = lm.identity
        fallback = identity.get("model") or identity.get("backend") or type(lm).__name__
    failed = None if error is None else f"{type(error).__name__}: {error}"
    with _LOCK:
        _CALLS.append((time.time() - latency, latency, request, response, failed, fallback))


def _call(raw: _Raw) -> LMCall:
    at, latency, request, response, failed, fallback = raw
    if response is None:
        return LMCall(at, fallback, request.messages, (), Usage(), latency, False, failed)
    if request.score is not None:
        responses = tuple(f"{c.text!r}: logprob {c.logprob:.4g}" for c in response.choices)
    else:
        responses = tuple(c.text for c in response.choices)
    cached = response.cached or response.usage.cache_hits > 0
    return LMCall(at, response.model or fallback, request.messages, responses, response.usage, latency, cached, failed)


def clear() -> None:
    """Forget every recorded call."""
    with _LOCK:
        _CALLS.clear()


def history(n: int = 1, *, file: TextIO | None = None, show: bool = True) -> list[LMCall]:
    r"""Print the last ``n`` LM calls, oldest first, and return them.

    Args:
        n: how many (at most :data:`SIZE` are kept).
        file: where to print (default: standard output).
        show: False returns the calls without printing them.

    Returns:
        The calls, oldest first.

    Example:
        >>> from oobleck import FakeLM, Predict, history
        >>> _ = Predict("question -> answer", lm=FakeLM([{"answer": "4"}]))(question="2+2?")
        >>> calls = history(show=False)
        >>> calls[-1].responses
        ('[[ ## answer ## ]]\n4',)
    """
    with _LOCK:
        raws = list(_CALLS)[-n:] if n > 0 else []
    calls = [_call(raw) for raw in raws]
    if show:
        out = file if file is not None else sys.stdout
        for i, call in enumerate(calls):
            out.write(("\n" if i else "") + call.render() + "\n")
        if not calls:
            out.write("no LM calls yet\n")
    return calls
