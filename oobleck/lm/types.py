"""The data that crosses the LM boundary: requests, responses, usage.

All are frozen pydantic models, so they hash into cache keys, save as JSON and cannot be
changed by the code that receives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oobleck.lm.soft_prompt import SoftPrompt

__all__ = [
    "CachePolicy",
    "Choice",
    "LMRequest",
    "LMResponse",
    "Message",
    "TokenLogprob",
    "ToolCall",
    "Usage",
]

CachePolicy = Literal["on", "read", "write", "off"]
"""Per call: ``on`` reads and writes, ``read`` only reads, ``write`` refreshes, ``off`` bypasses."""

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Message(BaseModel):
    """One chat message."""

    model_config = _FROZEN

    role: Literal["system", "user", "assistant"]
    content: str


class LMRequest(BaseModel):
    """Everything needed to make one LM call.

    Attributes:
        messages: the chat messages to send.
        temperature, max_tokens, stop, n, seed, top_p: decoding parameters (None: backend default).
        logprobs: ask for token log-probabilities; ``top_logprobs`` alternatives per token.
        response_format: a JSON schema the output must follow, as
            ``{"name": ..., "schema": {...}}``; backends without structured output ignore it
            only if the adapter allows (see ``LM.capabilities``).
        score: completions to score instead of generating (log-probability of these exact
            tokens after the messages): one string, or several scored together; the response
            has one choice per completion, in order, whose ``logprobs`` are its tokens' (so
            ``choice.logprob`` is the total and ``len(choice.logprobs)`` the token count, for
            length normalisation) and whose ``finish_reason`` is ``"score"``, or
            ``"score_first_token"`` where a backend could score only the first token. Only
            backends with ``capabilities.scoring`` accept it.
        soft_prompt: trained vectors to apply with the messages; only backends with
            ``capabilities.soft_prompts`` accept it. Its sha256 (not its tensors) is in the key.
        tools: functions the model may call (the OpenAI ``tools`` API), each
            ``{"type": "function", "function": {"name", "description", "parameters"}}``; only
            backends with ``capabilities.tool_calls`` accept it. The calls come back as
            ``Choice.tool_calls``. Part of the cache key (it changes the answer).
        tool_choice: with ``tools``: ``"auto"`` (the model may answer in text), ``"required"``
            (it must call one) or ``"none"``; None: the server's default.
        sample_index: which sample of this exact request is wanted. Not sent to the server; it
            is part of the cache key, so an optimizer can ask for a fresh sample.
        adapter: the name and version of the adapter that rendered the messages
            (``"chat/1"``). Not sent to the server; part of the cache key.
        cache: the cache policy for this call (not part of the cache key, never sent).
        extra: backend-specific parameters passed through unchanged.
    """

    model_config = _FROZEN

    messages: tuple[Message, ...]
    temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: tuple[str, ...] | None = None
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0)
    response_format: dict[str, Any] | None = None
    score: str | tuple[str, ...] | None = None
    soft_prompt: SoftPrompt | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: Literal["auto", "required", "none"] | None = None
    sample_index: int = Field(default=0, ge=0)
    adapter: str | None = None
    cache: CachePolicy = "on"
    extra: dict[str, Any] = Field(default_factory=dict)

    def key_data(self) -> dict[str, Any]:
        """The request as JSON data for a cache key (everything but the cache policy).

        A set (in ``extra``, say) is written sorted: its own order changes per process.
        """
        from oobleck._types import to_jsonable

        data: dict[str, Any] = to_jsonable(self)
        data.pop("cache", None)
        return data


class TokenLogprob(BaseModel):
    """A generated token, its log-probability and the top alternatives."""

    model_config = _FROZEN

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


class ToolCall(BaseModel):
    """One function call the model asked for (native tool calling).

    ``arguments`` is the text the model wrote, unparsed: it is meant to be a JSON object, and
    what to do when it is not (or names no known tool) is the caller's decision.
    """

    model_config = _FROZEN

    name: str
    arguments: str = "{}"
    id: str = ""


class Choice(BaseModel):
    """One completion.

    Attributes:
        text: the completion's text (with native tool calls: whatever text came beside them).
        finish_reason: why generation stopped (``"stop"``, ``"length"``, ``"tool_calls"``, ...).
        logprobs: the tokens' log-probabilities, when asked for.
        tool_calls: the function calls the model made (requests with ``tools`` only), else None.
    """

    model_config = _FROZEN

    text: str
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[ToolCall, ...] | None = None

    @property
    def logprob(self) -> float:
        """The summed log-probability of this choice's tokens (needs ``logprobs``; else NaN)."""
        return sum(t.logprob for t in self.logprobs) if self.logprobs is not None else float("nan")


class Usage(BaseModel):
    """What calls cost. Adds up with ``+``.

    Attributes:
        calls: every attempt sent to a backend: first tries, parse-repair retries and transport
            retries (429, 5xx, timeouts) alike. ``max_lm_calls`` caps this number.
        retries: the subset of ``calls`` that were retries, of either kind.
        cache_hits: requests answered from the cache (they cost no tokens and count in no ``calls``).
        prompt_tokens, completion_tokens: tokens of the calls that reached a backend.
        cached_tokens: what the calls answered from the cache cost when they were first made.
        latency_s: wall time spent waiting for LMs.
    """

    model_config = _FROZEN

    calls: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return _usage(
            calls=self.calls + other.calls,
            retries=self.retries + other.retries,
            cache_hits=self.cache_hits + other.cache_hits,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            latency_s=self.latency_s + other.latency_s,
        )

    def __str__(self) -> str:
        """The counts as ``name=value``, the wait to two significant digits (``latency_s=5.3``)."""
        parts = [f"{name}={getattr(self, name)}" for name in _USAGE_FIELDS_ORDER if name != "latency_s"]
        return " ".join([*parts, f"latency_s={float(f'{self.latency_s:.2g}'):g}"])

    def with_latency(self, seconds: float) -> Usage:
        """The same usage with ``latency_s`` set."""
        return _usage(**{**self.__dict__, "latency_s": seconds})


def _usage(**values: Any) -> Usage:
    # Usage is summed on every call: build it from known-good numbers without re-validating.
    new = object.__new__(Usage)
    object.__setattr__(new, "__dict__", values)
    object.__setattr__(new, "__pydantic_fields_set__", _USAGE_FIELDS)
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_private__", None)
    return new


_USAGE_FIELDS = frozenset(Usage.model_fields)
_USAGE_FIELDS_ORDER = tuple(Usage.model_fields)


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


def usage_from_dict(data: Mapping[str, Any] | None) -> Usage:
    """Rebuild usage saved by :func:`usage_dict`."""
    return Usage(**dict(data or {}))


class LMResponse(BaseModel):
    """What an LM returned for one request.

    Attributes:
        choices: one per requested sample (``n``).
        usage: the cost of this call (a cache hit has ``cache_hits=1`` and no tokens).
        model: the model name the backend reported.
        cached: True when the answer came from a cache.
    """

    model_config = _FROZEN

    choices: tuple[Choice, ...]
    usage: Usage = Usage()
    model: str = ""
    cached: bool = False

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.choices[0].text if self.choices else ""
