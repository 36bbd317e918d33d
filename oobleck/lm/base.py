"""The LM seam: a small protocol every backend implements, and a base class with defaults."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from oobleck.lm.types import LMRequest, LMResponse, Message

__all__ = ["ANSWER_WRITER", "LM", "TEXT_SINK", "AnswerWriter", "BaseLM", "Capabilities", "TextSink", "text_sink"]

AnswerWriter = Callable[[Mapping[str, Any]], str]
TextSink = Callable[[str], None]

#: How the code making a call wants output values written as completion text. Predict sets it
#: (from its adapter) around each call; only backends that make answers up from values
#: (FakeLM's scripted dicts) read it, so the LM layer never needs to know a prompt format.
ANSWER_WRITER: contextvars.ContextVar[AnswerWriter | None] = contextvars.ContextVar(
    "oobleck_answer_writer", default=None
)

#: Where a backend that can stream sends each piece of completion text as it is decoded.
#: Predict sets it around a call when the caller streams (``program.stream(...)``); a backend
#: that streams reads it with :func:`text_sink`, calls it with each new piece of the text of
#: its one choice, in order, and still returns the whole response from ``complete`` (so
#: caching, parsing and usage are those of a plain call). A backend that does not stream
#: ignores it. The sink may raise (the consumer stopped reading): the backend lets that
#: propagate, closing what it holds open.
TEXT_SINK: contextvars.ContextVar[TextSink | None] = contextvars.ContextVar("oobleck_text_sink", default=None)


def text_sink(request: LMRequest) -> TextSink | None:
    """The sink ``request``'s text should be streamed to, or None (then do not stream).

    None unless the caller streams, and for requests whose text is not one answer to read as
    it comes: scoring requests and those asking for several samples (``n > 1``).
    """
    sink = TEXT_SINK.get()
    if sink is None or request.score is not None or request.n != 1:
        return None
    return sink


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond plain chat completion.

    Attributes:
        json_schema: honours ``LMRequest.response_format`` (structured output / grammar).
        logprobs: returns token log-probabilities when asked.
        n: returns several samples per request.
        scoring: accepts ``LMRequest.score`` (log-probability of a given completion).
        soft_prompts: applies ``LMRequest.soft_prompt`` (trained virtual tokens).
        tool_calls: native tool calling: sends ``LMRequest.tools`` to the model and returns
            its calls in ``Choice.tool_calls`` (the OpenAI ``tools`` API). ReAct then asks for
            its next action as a tool call instead of a constrained or free-text answer.
    """

    json_schema: bool = False
    logprobs: bool = False
    n: bool = False
    scoring: bool = False
    soft_prompts: bool = False
    tool_calls: bool = False


@runtime_checkable
class LM(Protocol):
    """What oobleck needs from a language model backend."""

    @property
    def identity(self) -> dict[str, str]:
        """Backend, model and endpoint: part of every cache key, never a secret."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What the backend supports."""
        ...

    def complete(self, request: LMRequest) -> LMResponse:
        """Answer one request, or raise an :class:`~oobleck.errors.LMError`."""
        ...

    async def acomplete(self, request: LMRequest) -> LMResponse:
        """The async form of :meth:`complete`."""
        ...


class BaseLM:
    """Defaults for backends: async through a worker thread, a text convenience call.

    Subclasses implement ``identity``, ``complete`` and optionally ``capabilities``. A backend
    that can stream sends each piece of text to :func:`text_sink` as it decodes (and still
    returns the whole response); one that does not still works under ``program.stream()``,
    whose fields then arrive whole once the answer is parsed.
    """

    capabilities: Capabilities = Capabilities()

    @property
    def identity(self) -> dict[str, str]:
        """Backend and model; subclasses add the endpoint."""
        return {"backend": type(self).__name__}

    @property
    def settings(self) -> dict[str, Any]:
        """Decoding settings applied to every call (a backend's constructor ``**defaults``).

        Part of every cache key: an answer made at temperature 0 is never served for 1.
        """
        defaults = getattr(self, "defaults", None)
        return dict(defaults) if isinstance(defaults, dict) else {}

    def complete(self, request: LMRequest) -> LMResponse:  # pragma: no cover - abstract
        """Send ``request`` and return the response (a backend implements this)."""
        raise NotImplementedError

    async def acomplete(self, request: LMRequest) -> LMResponse:
        """Run :meth:`complete` in a worker thread (the context travels with it)."""
        import asyncio  # only async callers pay for it

        return await asyncio.to_thread(self.complete, request)

    def __call__(self, prompt: str, **params: Any) -> str:
        """Send one user message and return the text of the answer."""
        request = LMRequest(messages=(Message(role="user", content=prompt),), **params)
        return self.complete(request).text

    def __repr__(self) -> str:
        ident = ", ".join(f"{k}={v!r}" for k, v in self.identity.items() if k != "backend")
        return f"{type(self).__name__}({ident})"
