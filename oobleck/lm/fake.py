"""FakeLM: a scripted, in-process LM for tests (yours and ours).

Give it the answers to return, in order, as raw text or as dicts of output fields, or give it
a function of the request. A dict is written the way the calling predictor's adapter writes
answers (see :data:`oobleck.lm.base.ANSWER_WRITER`), as JSON when called outside a predictor.
Give it ``scores=`` and it also scores completions (``LMRequest.score``) from scripted
log-probabilities. Called under ``program.stream(...)``, it streams each answer in pieces of
``stream_chunk`` characters; ``drop_stream_after=`` breaks every answer part-way, as a server
that drops the connection mid-stream.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

from oobleck import _types
from oobleck.errors import ConfigError, LMConnectionError, LMResponseError
from oobleck.lm.base import ANSWER_WRITER, BaseLM, Capabilities, text_sink
from oobleck.lm.types import Choice, LMRequest, LMResponse, TokenLogprob, ToolCall, Usage

__all__ = ["FakeLM"]

Scripted = Union[str, Mapping[str, Any], Choice, ToolCall]
ScriptedScore = Union[float, Sequence[float]]
Scores = Union[Mapping[str, ScriptedScore], Callable[[LMRequest], Mapping[str, ScriptedScore]]]


class FakeLM(BaseLM):
    """An LM that answers from a script and records every request.

    Args:
        responses: answers in order (strings, or dicts of output field values), or a function
            ``request -> answer``. A :class:`~oobleck.lm.ToolCall` is answered as a native
            tool call (empty text, ``finish_reason="tool_calls"``); a
            :class:`~oobleck.lm.Choice` is returned as it is (text beside tool calls, a
            ``finish_reason``). Give ``capabilities=Capabilities(tool_calls=True)`` to stand
            in for a server with native tool calling.
        cycle: start again from the first answer when the script runs out (otherwise running
            out raises LMResponseError).
        name: the model name in its identity (two FakeLMs with different names never share
            cache entries).
        capabilities: what it claims to support. By default none of the structured kinds: a
            script constrains nothing, so programs on a FakeLM get the adapter of a plain chat
            backend. Pass ``Capabilities(json_schema=True)`` to stand in for a backend with
            structured output (the default adapter then answers in constrained JSON).
            With ``scores`` and no ``capabilities``, it claims ``scoring`` too.
        scores: scripted log-probabilities for scoring requests: a mapping from completion
            text to its log-probability (one token) or to a sequence of per-token
            log-probabilities (a multi-token completion: its ``logprob`` is their sum and
            ``len(choice.logprobs)`` its token count), or a function ``request -> mapping``
            (for scores that depend on the prompt). A completion the mapping lacks is an
            LMResponseError. Without ``scores``, a scoring request is a ConfigError.
        stream_chunk: when the caller streams (``program.stream(...)``), the answer's text is
            sent in pieces of this many characters, as a server streams tokens.
        drop_stream_after: break every answer after this many characters of its text: a
            streamed call receives them, then raises LMConnectionError (as a server that
            drops the connection mid-answer); a plain call raises it at once. None: never.

    Attributes:
        requests: every request received, in order.

    Example:
        >>> from oobleck import Predict
        >>> lm = FakeLM([{"answer": "Paris"}])
        >>> Predict("question -> answer", lm=lm)(question="Capital of France?").answer
        'Paris'
        >>> len(lm.requests)
        1
        >>> scorer = FakeLM(scores={"yes": -0.2, "no": [-1.0, -0.5]})
        >>> [c.logprob for c in scorer.complete(LMRequest(messages=(), score=("yes", "no"))).choices]
        [-0.2, -1.5]
    """

    capabilities = Capabilities(n=True)

    def __init__(
        self,
        responses: Iterable[Scripted] | Callable[[LMRequest], Scripted] = (),
        *,
        cycle: bool = False,
        name: str = "fake",
        capabilities: Capabilities | None = None,
        scores: Scores | None = None,
        stream_chunk: int = 4,
        drop_stream_after: int | None = None,
    ) -> None:
        if not isinstance(stream_chunk, int) or isinstance(stream_chunk, bool) or stream_chunk < 1:
            raise ConfigError(f"stream_chunk must be a positive number of characters, got {stream_chunk!r}")
        if drop_stream_after is not None and (
            not isinstance(drop_stream_after, int) or isinstance(drop_stream_after, bool) or drop_stream_after < 0
        ):
            raise ConfigError(
                f"drop_stream_after must be None or a number of characters >= 0, got {drop_stream_after!r}"
            )
        self.stream_chunk = stream_chunk
        self.drop_stream_after = drop_stream_after
        if capabilities is not None:
            self.capabilities = capabilities
        elif scores is not None:
            self.capabilities = Capabilities(n=True, scoring=True)
        self._scores = scores
        self._fn: Callable[[LMRequest], Scripted] | None = responses if callable(responses) else None
        self._script: list[Scripted] = [] if callable(responses) else list(responses)
        self._iter = itertools.cycle(self._script) if cycle and self._script else iter(self._script)
        self._lock = threading.Lock()
        self.name = name
        self.requests: list[LMRequest] = []
        self._choices: dict[str, Choice] = {}

    @property
    def identity(self) -> dict[str, str]:
        """``{"backend": "fake", "model": name}``."""
        return {"backend": "fake", "model": self.name}

    def _next(self, request: LMRequest) -> Scripted:
        if self._fn is not None:
            return self._fn(request)
        try:
            return next(self._iter)
        except StopIteration:
            raise LMResponseError(
                f"FakeLM ran out of scripted responses after {len(self._script)}; give it more, or pass cycle=True"
            ) from None

    def complete(self, request: LMRequest) -> LMResponse:
        """Return the next scripted answer(s) for ``request``, or its scripted scores."""
        if request.score is not None:
            return self._score(request)
        with self._lock:
            self.requests.append(request)
            answers = [self._next(request) for _ in range(request.n)]
        choices = tuple(self._scripted_choice(a, request) for a in answers)
        self._stream(request, [c.text for c in choices])
        # "Tokens" are counted as 4 characters each (about what a BPE tokenizer makes of
        # English): deterministic and good enough for budgets.
        prompt_tokens = sum(_tokens(m.content) for m in request.messages)
        completion = sum(
            _tokens(c.text) + sum(_tokens(t.name + t.arguments) for t in c.tool_calls or ()) for c in choices
        )
        usage = Usage(calls=1, prompt_tokens=prompt_tokens, completion_tokens=completion)
        return LMResponse(choices=choices, usage=usage, model=self.name)

    def _scripted_choice(self, answer: Scripted, request: LMRequest) -> Choice:
        if isinstance(answer, Choice):
            return answer
        if isinstance(answer, ToolCall):
            return Choice(text="", finish_reason="tool_calls", tool_calls=(answer,))
        return self._choice(_render(answer, request))

    def _stream(self, request: LMRequest, texts: list[str]) -> None:
        """Send the answer to the caller's stream in pieces; break it where scripted to."""
        sink = text_sink(request)
        cut = self.drop_stream_after
        for text in texts:
            if sink is not None:
                shown = text if cut is None else text[:cut]
                for start in range(0, len(shown), self.stream_chunk):
                    sink(shown[start : start + self.stream_chunk])
            if cut is not None and cut < len(text):
                raise LMConnectionError(
                    f"FakeLM dropped the connection after {cut} of the answer's {len(text)} characters "
                    f"(drop_stream_after={cut})"
                )

    def _score(self, request: LMRequest) -> LMResponse:
        if self._scores is None:
            raise ConfigError(
                "this FakeLM has no scripted log-probabilities, so it cannot score completions "
                "(LMRequest.score); pass FakeLM(scores={completion: logprob, ...})"
            )
        with self._lock:
            self.requests.append(request)
        texts = (request.score,) if isinstance(request.score, str) else tuple(request.score or ())
        table = self._scores(request) if callable(self._scores) else self._scores
        missing = [t for t in texts if t not in table]
        if missing:
            raise LMResponseError(
                f"FakeLM has no scripted score for {missing[:5]} (it has {sorted(table)[:10]}); add them to scores="
            )
        choices = tuple(_scored(text, table[text]) for text in texts)
        prompt_tokens = sum(_tokens(m.content) for m in request.messages)
        usage = Usage(calls=1, prompt_tokens=prompt_tokens + sum(len(c.logprobs or ()) for c in choices))
        return LMResponse(choices=choices, usage=usage, model=self.name)

    def _choice(self, text: str) -> Choice:
        # Choices are immutable: a scripted answer's is built once (unbounded texts from a
        # function are not kept).
        if self._fn is not None:
            return Choice(text=text, finish_reason="stop")
        choice = self._choices.get(text)
        if choice is None:
            choice = self._choices[text] = Choice(text=text, finish_reason="stop")
        return choice


def _scored(text: str, value: ScriptedScore) -> Choice:
    """A scoring choice: one "token" per scripted value, the text cut into that many pieces."""
    values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
    if not values:
        raise ConfigError(f"the scripted score of {text!r} is an empty sequence; give at least one log-probability")
    if any(v > 0 for v in values):
        raise ConfigError(f"log-probabilities are at most 0; the scripted score of {text!r} has {values}")
    n = len(values)
    cuts = [round(i * len(text) / n) for i in range(n + 1)]
    tokens = tuple(TokenLogprob(token=text[a:b], logprob=v) for a, b, v in zip(cuts, cuts[1:], values))
    return Choice(text=text, finish_reason="score", logprobs=tokens)


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _render(answer: str | Mapping[str, Any], request: LMRequest) -> str:
    if isinstance(answer, str):
        return answer
    writer = ANSWER_WRITER.get()
    if writer is not None:
        return writer(answer)
    return json.dumps({k: _types.to_jsonable(v) for k, v in answer.items()}, ensure_ascii=False)
