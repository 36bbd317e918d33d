"""OpenAILM: any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp, Ollama) via ``openai``.

Retries are oobleck's, not the SDK's, so each one is counted: exponential backoff with jitter
on 429 (honouring a sane Retry-After), 5xx, timeouts and dropped connections. Each retry is
reserved in the active budget before it is sent (:func:`oobleck._budget.extend`); a retry the
budget refuses is not sent, and the call raises BudgetExceededError. ``timeout`` is a
deadline for each whole attempt: the body is read in chunks against the clock, so a server
that trickles bytes cannot stretch it (the SDK's own timeout applies per read). One semaphore
per LM bounds the calls in flight across all threads that share it. SDK errors are translated
into oobleck's tree at this edge, and the API key never appears in identities, logs or errors.

Under ``program.stream(...)`` a call is sent with ``stream=True`` (and
``stream_options.include_usage``, so usage is counted as for a plain call): each piece of text
goes on as it arrives (:data:`oobleck.lm.base.TEXT_SINK`), and the chunks are put back
together into the response a plain call returns, so it parses and caches the same. A stream
that breaks after text went on is not retried. Requests asking for ``logprobs`` are not
streamed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import threading
import time
from typing import Any, Literal

from oobleck import _budget
from oobleck.errors import (
    ConfigError,
    LMConnectionError,
    LMContextLengthError,
    LMError,
    LMRateLimitError,
    LMResponseError,
    LMTimeoutError,
)
from oobleck.lm import _chat_wire, _llama_score, _stream_wire
from oobleck.lm._policy import check_decoding
from oobleck.lm.base import BaseLM, Capabilities, TextSink, text_sink
from oobleck.lm.types import Choice, LMRequest, LMResponse, TokenLogprob, Usage

__all__ = ["OpenAILM", "ScoringMode"]

ScoringMode = Literal["llama.cpp", "first_token"]
"""How :class:`OpenAILM` scores completions: ``"llama.cpp"`` (exact) or ``"first_token"``."""

FIRST_TOKEN_ALTERNATIVES = 20
"""``top_logprobs`` asked for in ``first_token`` scoring (OpenAI's maximum)."""

log = logging.getLogger(__name__)

_SDK_SAMPLING = frozenset({"frequency_penalty", "presence_penalty", "logit_bias", "reasoning_effort"})

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The largest response body read from a server (a bigger one is an LMResponseError)."""


def _sdk() -> Any:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("OpenAILM needs the openai package: pip install 'oobleck[openai]'") from exc
    return openai


class OpenAILM(BaseLM):
    """A chat model behind the OpenAI API or any compatible server.

    Args:
        model: the model name the server expects.
        base_url: the server's base URL (e.g. ``http://127.0.0.1:8080/v1``); default
            ``$OPENAI_BASE_URL``, else OpenAI's. :func:`oobleck.LM` builds one from a provider
            string (``"anthropic/..."``, ``"ollama/..."``).
        api_key: the key; defaults to ``$OPENAI_API_KEY``, or a dummy for a custom ``base_url``.
        client / async_client: ``openai.OpenAI`` / ``AsyncOpenAI`` clients you built yourself.
        http_client: an ``httpx.Client`` for the sync client (proxies, custom transports).
        timeout: the deadline of each attempt in seconds, from sending the request to the last
            byte of the answer (a server that trickles bytes cannot stretch it).
        max_retries: extra attempts after a retryable failure. Each attempt counts as one LM
            call in usage (``calls``), and the extra ones also as ``retries``.
        backoff: first backoff delay in seconds (doubles each retry, with jitter).
        max_backoff: the longest wait between attempts, Retry-After included.
        max_concurrency: calls in flight at once, across every thread using this LM.
        capabilities: override what the server is assumed to support. By default: structured
            output, logprobs, ``n``; native tool calls (``tool_calls``) only on OpenAI's own
            API (``https://api.openai.com/``): pass ``Capabilities(..., tool_calls=True)`` for a server
            that has them (llama-server with a tool-aware jinja template, vLLM with
            ``--enable-auto-tool-choice``).
        deadline: the most seconds one call may take, every attempt and every wait between
            attempts included (None: ``max_retries + 1`` attempts of ``timeout`` each, plus
            backoff). A retry that could not finish in time is not started.
        scoring: how to answer ``LMRequest.score`` (the log-probability of given completions),
            which the OpenAI API does not define; declared in ``capabilities.scoring``.

            - ``None`` (default): not offered; a scoring request is a ConfigError.
            - ``"llama.cpp"``: exact, on a llama.cpp server (``llama-server``,
              :meth:`LocalLM.serve`): the server applies its chat template
              (``/apply-template``) and tokenizes (``/tokenize``), both at ``base_url``
              without its ``/v1``, and each completion is generated forced token by token
              through a grammar on ``/v1/completions``, reporting each token's raw
              log-probability (see :mod:`oobleck.lm._llama_score`). One scoring request
              counts as one call, whatever number of HTTP exchanges it takes.
            - ``"first_token"``: any server that returns ``top_logprobs`` (OpenAI, vLLM, ...):
              one chat completion of one token with the top 20 alternatives; a completion
              scores the log-probability of its first token, taken to be the longest returned
              token its text starts with. Exact only for completions of one token; longer ones
              are ranked by their first token alone (their choice holds that one token and
              ``finish_reason="score_first_token"``). A ConfigError when two completions share
              their first token or one's first token is not among the 20, since then they
              cannot be ranked.
        **defaults: decoding defaults sent with every call (temperature, max_tokens, ...).

    Example:
        >>> lm = OpenAILM("gpt-4o-mini")                                     # doctest: +SKIP
        >>> lm = OpenAILM("smollm2", base_url="http://127.0.0.1:8080/v1")   # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        async_client: Any = None,
        http_client: Any = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_concurrency: int = 8,
        capabilities: Capabilities | None = None,
        deadline: float | None = None,
        scoring: ScoringMode | None = None,
        **defaults: Any,
    ) -> None:
        if scoring not in (None, "llama.cpp", "first_token"):
            raise ConfigError(f"scoring must be None, 'llama.cpp' or 'first_token', got {scoring!r}")
        openai = _sdk()
        if client is None:
            base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
            key = api_key or os.environ.get("OPENAI_API_KEY") or ("unused" if base_url else None)
            if key is None:
                raise ConfigError(
                    "OpenAILM needs an API key: pass api_key=..., set OPENAI_API_KEY, "
                    "or give base_url= (or set OPENAI_BASE_URL) for a local server that needs none"
                )
            client = openai.OpenAI(
                api_key=key, base_url=base_url, timeout=timeout, max_retries=0, http_client=http_client
            )
        self.client = client
        self._async_client = async_client
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_concurrency = max_concurrency
        self.deadline = deadline
        check_decoding(defaults, "OpenAILM")
        self.defaults = defaults
        self.scoring = scoring
        # Native tool calls only on OpenAI's own API: a compatible server may drop ``tools``
        # silently (llama-server without a tool-aware jinja template, as with SmolLM2 behind
        # LocalLM.serve(); vLLM without --enable-auto-tool-choice). Declare it with
        # capabilities= for a server known to have it.
        self.capabilities = capabilities or Capabilities(
            json_schema=True,
            logprobs=True,
            n=True,
            scoring=scoring is not None,
            tool_calls=str(client.base_url).startswith("https://api.openai.com/"),
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)
        # One semaphore per event loop (a semaphore binds to the loop that first waits on it),
        # kept with its loop; closed loops' entries are dropped when another loop first calls
        # (each asyncio.run used to leave its loop and semaphore here for good).
        self._async_slots: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = {}
        self._async_lock = threading.Lock()
        self._jitter = random.Random(0)

    @property
    def identity(self) -> dict[str, str]:
        """Backend, model and endpoint (never the key)."""
        return {"backend": "openai", "model": self.model, "endpoint": str(self.client.base_url)}

    @property
    def async_client(self) -> Any:
        """An ``AsyncOpenAI`` client for the same endpoint (built on first use)."""
        if self._async_client is None:
            self._async_client = _sdk().AsyncOpenAI(
                api_key=self.client.api_key, base_url=self.client.base_url, timeout=self.timeout, max_retries=0
            )
        return self._async_client

    def preview(self, request: LMRequest) -> dict[str, Any]:
        """The HTTP request :meth:`complete` would send for ``request``, without sending it.

        Returns:
            ``{"method", "url", "headers", "json"}``: the URL of the chat-completions route,
            the authorization header with the key masked (``Bearer ***``), and the JSON body.
        """
        return _chat_wire.http_preview(str(self.client.base_url), self._params(request))

    # ---- sync ----

    def complete(self, request: LMRequest) -> LMResponse:
        """Send ``request``, retrying retryable failures; raises an LMError subclass."""
        if request.score is not None:
            return self._score(request)
        params = self._params(request)
        sink = self._sink(request)
        end = self._end()
        for attempt in range(self.max_retries + 1):
            if attempt:
                _budget.extend()  # a retry is reserved before it is sent, like the first attempt
            started = time.perf_counter()
            reader = _stream_wire.ChunkReader(str(self.client.base_url))
            try:
                with self._slots:  # the timeout starts once a slot is ours, not while queueing
                    deadline = min(time.perf_counter() + self.timeout, end)
                    if sink is None:
                        raw = self._attempt(params, deadline)
                    else:
                        raw = self._attempt_streamed(params, deadline, reader, sink)
                return self._finish(raw, attempt, started)
            except Exception as exc:
                delay = self._after_failure(exc, attempt, end, streamed=reader.streamed)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _sink(self, request: LMRequest) -> TextSink | None:
        # Token log-probabilities are read from whole answers only: a request asking for them
        # is not streamed (its fields still reach the stream, whole, once parsed).
        return None if request.logprobs else text_sink(request)

    def _attempt_streamed(
        self, params: dict[str, Any], deadline: float, reader: _stream_wire.ChunkReader, sink: TextSink
    ) -> Any:
        """One streamed exchange: each piece of text goes to ``sink`` as it comes."""
        create = self.client.chat.completions.with_streaming_response.create
        size = 0
        lines = _stream_wire.LineSplitter()  # by chunks, not iter_lines: the clock is read per chunk
        with create(
            **params, stream=True, stream_options=_stream_wire.STREAM_OPTIONS, timeout=self.timeout
        ) as response:
            for data in response.iter_bytes():  # a sink that raises (the consumer left) closes the response
                size += len(data)
                self._check_progress(size, deadline)
                for line in lines.push(data):
                    reader.feed(line, sink)
            for line in lines.end():
                reader.feed(line, sink)
        return reader.body()

    def _attempt(self, params: dict[str, Any], deadline: float) -> Any:
        """One HTTP exchange, its body read chunk by chunk against ``deadline``."""
        create = self.client.chat.completions.with_streaming_response.create
        with create(**params, timeout=self.timeout) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                self._check_progress(len(body), deadline)
        return _decode(bytes(body))

    def _end(self) -> float:
        return time.perf_counter() + self.deadline if self.deadline is not None else math.inf

    def _check_progress(self, size: int, deadline: float) -> None:
        if time.perf_counter() > deadline:
            raise LMTimeoutError(
                f"the answer from {self.client.base_url} did not arrive in time (timeout={self.timeout}s per "
                f"attempt, deadline={self.deadline}s per call; the server sends it too slowly); raise them "
                "or check the server"
            )
        if size > MAX_RESPONSE_BYTES:
            raise LMResponseError(f"the answer from {self.client.base_url} is larger than {MAX_RESPONSE_BYTES} bytes")

    # ---- async ----

    def _slots_here(self) -> asyncio.Semaphore:
        """The concurrency semaphore of the running event loop."""
        loop = asyncio.get_running_loop()
        known = self._async_slots.get(id(loop))
        if known is not None and known[0] is loop:
            return known[1]
        with self._async_lock:
            live = {k: v for k, v in self._async_slots.items() if not v[0].is_closed()}
            slots = asyncio.Semaphore(self.max_concurrency)
            live[id(loop)] = (loop, slots)
            self._async_slots = live
        return slots

    async def acomplete(self, request: LMRequest) -> LMResponse:
        """Async form of :meth:`complete` (uses ``AsyncOpenAI``; scoring runs in a worker thread)."""
        if request.score is not None:
            return await asyncio.to_thread(self._score, request)
        params = self._params(request)
        sink = self._sink(request)
        slots = self._slots_here()
        end = self._end()
        for attempt in range(self.max_retries + 1):
            if attempt:
                _budget.extend()
            started = time.perf_counter()
            reader = _stream_wire.ChunkReader(str(self.client.base_url))
            try:
                async with slots:
                    limit = min(time.perf_counter() + self.timeout, end)
                    exchange = (
                        self._aattempt(params, limit)
                        if sink is None
                        else self._aattempt_streamed(params, limit, reader, sink)
                    )
                    raw = await asyncio.wait_for(exchange, max(0.0, limit - time.perf_counter()))
                return self._finish(raw, attempt, started)
            except TimeoutError:
                timeout = LMTimeoutError(
                    f"no complete answer from {self.client.base_url} in time (timeout={self.timeout}s, "
                    f"deadline={self.deadline}s); raise them or check the server"
                )
                delay = self._after_failure(timeout, attempt, end, streamed=reader.streamed)
            except Exception as exc:
                delay = self._after_failure(exc, attempt, end, streamed=reader.streamed)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aattempt(self, params: dict[str, Any], deadline: float) -> Any:
        create = self.async_client.chat.completions.with_streaming_response.create
        async with create(**params, timeout=self.timeout) as response:
            body = bytearray()
            async for chunk in response.iter_bytes():
                body += chunk
                self._check_progress(len(body), deadline)
        return _decode(bytes(body))

    async def _aattempt_streamed(
        self, params: dict[str, Any], deadline: float, reader: _stream_wire.ChunkReader, sink: TextSink
    ) -> Any:
        create = self.async_client.chat.completions.with_streaming_response.create
        size = 0
        lines = _stream_wire.LineSplitter()
        async with create(
            **params, stream=True, stream_options=_stream_wire.STREAM_OPTIONS, timeout=self.timeout
        ) as response:
            async for data in response.iter_bytes():
                size += len(data)
                self._check_progress(size, deadline)
                for line in lines.push(data):
                    reader.feed(line, sink)
            for line in lines.end():
                reader.feed(line, sink)
        return reader.body()

    # ---- scoring ----

    def _score(self, request: LMRequest) -> LMResponse:
        if self.scoring is None:
            raise ConfigError(
                "this OpenAILM cannot score completions (LMRequest.score): the OpenAI API returns no "
                "log-probabilities for given text. Pass OpenAILM(..., scoring='llama.cpp') for a llama.cpp "
                "server (exact) or scoring='first_token' for a server that returns top_logprobs (first token only)"
            )
        texts = _llama_score.options(request)
        if not texts:
            raise ConfigError("LMRequest.score needs at least one completion to score")
        if request.soft_prompt is not None:
            raise ConfigError("OpenAILM cannot apply a soft prompt; score on a TransformersLM instead")
        if self.scoring == "first_token":
            return self._score_first_token(request, texts)
        started = time.perf_counter()
        server = _HttpLlama(self)
        choices, sent = _llama_score.score(server, request.messages, texts)
        usage = Usage(
            calls=1 + server.retries,
            retries=server.retries,
            prompt_tokens=sent,
            latency_s=time.perf_counter() - started,
        )
        return LMResponse(choices=choices, usage=usage, model=self.model)

    def _score_first_token(self, request: LMRequest, texts: tuple[str, ...]) -> LMResponse:
        ask = request.model_copy(
            update={
                "score": None,
                "logprobs": True,
                "top_logprobs": FIRST_TOKEN_ALTERNATIVES,
                "max_tokens": 1,
                "temperature": 0.0,
                "n": 1,
                "stop": None,
                "response_format": None,
            }
        )
        response = self.complete(ask)
        first = response.choices[0].logprobs if response.choices else None
        if not first:
            raise LMResponseError(
                f"scoring='first_token' needs token log-probabilities, but {self.client.base_url} returned none "
                "for logprobs=True; this server cannot score"
            )
        top = dict(first[0].top) or {first[0].token: first[0].logprob}
        top.setdefault(first[0].token, first[0].logprob)
        picked: dict[str, str] = {}
        for text in dict.fromkeys(texts):
            candidates = [t for t in top if t and text.startswith(t)]
            if not candidates:
                raise ConfigError(
                    f"scoring='first_token' cannot rank {text!r}: none of the server's top {len(top)} first tokens "
                    f"begins it ({sorted(top)[:8]}...), so its log-probability is unknown. Use fewer or likelier "
                    "labels, or a backend that scores exactly (LocalLM, TransformersLM, OpenAILM(scoring='llama.cpp'))"
                )
            picked[text] = max(candidates, key=len)
        shared = {t: [x for x in picked if picked[x] == t] for t in picked.values()}
        clash = next((group for group in shared.values() if len(group) > 1), None)
        if clash is not None:
            raise ConfigError(
                f"scoring='first_token' cannot rank {clash}: they begin with the same token "
                f"{picked[clash[0]]!r}, and only the first token's log-probability is known. Use labels that differ "
                "in their first word, or a backend that scores exactly (LocalLM, TransformersLM, "
                "OpenAILM(scoring='llama.cpp'))"
            )
        choices = tuple(
            Choice(
                text=text,
                finish_reason="score" if picked[text] == text else "score_first_token",
                logprobs=(TokenLogprob(token=picked[text], logprob=top[picked[text]]),),
            )
            for text in texts
        )
        return LMResponse(
            choices=choices, usage=response.usage.model_copy(update={"completion_tokens": 0}), model=response.model
        )

    def _post(self, url: str, body: dict[str, Any]) -> tuple[Any, int]:
        """POST ``body`` as JSON with this LM's retries; the decoded answer and the retries it took."""
        end = self._end()
        for attempt in range(self.max_retries + 1):
            if attempt:
                _budget.extend()
            try:
                with self._slots:
                    # An absolute URL: the SDK sends it as is (llama.cpp's /tokenize is outside /v1).
                    return self.client.post(url, body=body, cast_to=object, options={"timeout": self.timeout}), attempt
            except Exception as exc:
                delay = self._after_failure(exc, attempt, end)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- helpers ----

    def _params(self, request: LMRequest) -> dict[str, Any]:
        # Sampling knobs the SDK has no keyword for (top_k, min_p ...) travel in the body.
        params = _chat_wire.to_params(request, self.model, self.defaults)
        body_only = {k: params.pop(k) for k in request.extra if k not in _SDK_SAMPLING}
        if body_only:
            params["extra_body"] = {**(params.get("extra_body") or {}), **body_only}
        return params

    def _finish(self, raw: Any, attempt: int, started: float) -> LMResponse:
        response = _chat_wire.from_dict(raw)  # truncation (finish_reason "length") is judged by Predict
        # Every attempt reached the backend, so each is a call; all but the first were retries.
        usage = response.usage.model_copy(
            update={"calls": attempt + 1, "retries": attempt, "latency_s": time.perf_counter() - started}
        )
        return response.model_copy(update={"usage": usage})

    def _after_failure(self, exc: Exception, attempt: int, end: float = math.inf, *, streamed: int = 0) -> float:
        """The wait before the next attempt; raises the translated error when none is left.

        An attempt whose stream had already sent text on (``streamed`` characters) is never
        retried: the consumer has read that text, which a retry might not write again.
        """
        error = self._translate(exc)
        if streamed:
            why = f"; not retried: {streamed} characters of the answer had already been streamed"
            raise self._final(error, attempt, why) from exc
        if not error.retryable or attempt == self.max_retries:
            raise self._final(error, attempt) from exc
        delay = self._delay(error, attempt)
        if time.perf_counter() + delay >= end:
            raise self._final(error, attempt, f"; the call's deadline={self.deadline}s allows no retry") from exc
        log.warning("LM call failed (%s); retry %d/%d in %.2fs", error, attempt + 1, self.max_retries, delay)
        return delay

    def _delay(self, error: LMError, attempt: int) -> float:
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_backoff)
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return base * (0.5 + 0.5 * self._jitter.random())

    def _final(self, error: LMError, attempt: int, why: str = "") -> LMError:
        error.attempts = attempt + 1
        if attempt or why:
            error.args = (f"{error.args[0]} (after {attempt + 1} attempts{why})",)
        return error

    def _scrub(self, text: str) -> str:
        key = getattr(self.client, "api_key", None)
        if isinstance(key, str) and len(key) > 4:
            text = text.replace(key, "***")
        return text

    def _translate(self, exc: Exception) -> LMError:
        """Map an SDK exception onto oobleck's error tree."""
        if isinstance(exc, LMError):  # read from a body (an error the server sent with HTTP 200): mask it too
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (self._scrub(exc.args[0]), *exc.args[1:])
            return exc
        openai = _sdk()
        where = str(self.client.base_url)
        message = self._scrub(str(exc))
        transport = _transport_errors(openai)  # raised while reading a body, past the SDK's own checks
        if isinstance(exc, transport[1]):
            return LMTimeoutError(f"the answer from {where} stopped arriving for {self.timeout}s; raise timeout=")
        if isinstance(exc, transport[0]):
            return LMConnectionError(f"the connection to {where} broke while the answer was arriving ({message})")
        if isinstance(exc, openai.APITimeoutError):
            return LMTimeoutError(f"no answer from {where} within {self.timeout}s; raise timeout= or check the server")
        if isinstance(exc, openai.APIConnectionError):
            return LMConnectionError(f"cannot reach the LM server at {where} ({message}); is it running?")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retry_after = _retry_after(exc.response.headers) if exc.response is not None else None
            if status in (400, 413, 422) and _chat_wire.is_context_length_message(
                f"{message} {getattr(exc, 'code', '')}"
            ):
                return LMContextLengthError(
                    f"the prompt does not fit the context of {self.model} at {where} ({message}); "
                    "shorten the inputs, use fewer demos, or choose a model with a larger context",
                    status=status,
                )
            if status == 429:
                return LMRateLimitError(f"rate limited by {where}: {message}", status=status, retry_after=retry_after)
            if status in (401, 403):
                return LMResponseError(f"{where} refused the credentials (HTTP {status}); check api_key", status=status)
            retryable = status >= 500 or status in (408, 409)
            return LMResponseError(
                f"{where} answered HTTP {status}: {message}",
                status=status,
                retryable=retryable,
                retry_after=retry_after,
            )
        if isinstance(exc, (openai.APIResponseValidationError, ValueError)):
            return LMResponseError(f"unusable answer from {where}: {message}", retryable=True)
        if isinstance(exc, openai.APIError):
            return LMResponseError(f"LM call to {where} failed: {message}", retryable=False)
        if isinstance(exc, OSError):
            return LMConnectionError(f"the connection to {where} failed ({message})")
        return LMResponseError(f"LM call to {where} failed unexpectedly: {type(exc).__name__}: {message}")


def _transport_errors(openai: Any) -> tuple[type[BaseException], type[BaseException]]:
    """The SDK's httpx transport and timeout errors (it may ship its own httpx build)."""
    import sys

    httpx = sys.modules.get(openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])
    if httpx is None:  # pragma: no cover - the SDK imported it
        return (_Never, _Never)
    return (httpx.TransportError, httpx.TimeoutException)


class _Never(Exception):
    """Matches nothing."""


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        preview = body[:120].decode("utf-8", "replace")
        raise LMResponseError(
            f"expected a JSON chat completion from the LM server, got {len(body)} bytes starting {preview!r} ({exc})",
            retryable=True,
        ) from None


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from Retry-After(-ms); None when absent or not a finite, non-negative number."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: fall back to backoff
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


class _HttpLlama:
    """A llama.cpp server's scoring routes over HTTP, through an OpenAILM's client and retries."""

    def __init__(self, lm: OpenAILM) -> None:
        self._lm = lm
        base = str(lm.client.base_url).rstrip("/")
        self._v1 = base
        self._root = base[: -len("/v1")] if base.endswith("/v1") else base
        self.retries = 0

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        answer, retries = self._lm._post(url, body)
        self.retries += retries
        return answer

    def apply_template(self, messages: list[dict[str, str]]) -> str:
        answer = self._post(f"{self._root}/apply-template", {"messages": messages})
        prompt = answer.get("prompt") if isinstance(answer, dict) else None
        if not isinstance(prompt, str):
            raise LMResponseError(
                f"scoring='llama.cpp' needs llama.cpp's /apply-template at {self._root}, which returned no prompt; "
                "is this a llama.cpp server?"
            )
        return prompt

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        answer = self._post(
            f"{self._root}/tokenize", {"content": text, "add_special": add_special, "parse_special": True}
        )
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise LMResponseError(
                f"scoring='llama.cpp' needs llama.cpp's /tokenize at {self._root}, which returned no token ids; "
                "is this a llama.cpp server?"
            )
        return tokens

    def completion(self, body: dict[str, Any]) -> Any:
        return self._post(f"{self._v1}/completions", {"model": self._lm.model, **body})
