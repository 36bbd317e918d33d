"""The ASGI app: a FastAPI application in front of one program, with oobleck's limits and JSON errors.

FastAPI rather than bare Starlette: the OpenAPI document and its ``/docs`` page come from the
same pydantic models that validate each request, which FastAPI renders and Starlette does not;
FastAPI is itself a Starlette app, so it mounts in either. FastAPI and uvicorn are the
``serve`` extra, imported only when an app is built.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import pydantic

from oobleck import _types
from oobleck._version import __version__
from oobleck.artifact import Artifact
from oobleck.errors import ArtifactError, ConfigError, InputError, LMError, LMTimeoutError, ParseError
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.serve._models import ErrorBody, Served, Target, served

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["MAX_BATCH", "MAX_BODY", "MAX_CONCURRENCY", "QUEUE_TIMEOUT", "asgi_app", "check_limits", "error_bytes"]

log = logging.getLogger("oobleck.serve")

MAX_BODY = 1024 * 1024
MAX_CONCURRENCY = 16
MAX_BATCH = 64
QUEUE_TIMEOUT = 30.0
BODY_TIMEOUT = 30.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class _Failure(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def check_limits(**limits: float | None) -> None:
    """Refuse a limit that is not a finite positive number (None means "no limit" where allowed).

    Raises:
        ConfigError: naming the setting and the value, e.g. ``conn_timeout=nan``.
    """
    for name, value in limits.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name} must be a finite number above 0, got {value!r}")


def error_bytes(kind: str, message: str) -> bytes:
    """The JSON body of every error answer: ``{"error": {"type": ..., "message": ...}}``."""
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False).encode("utf-8")


def _status_for(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, InputError):
        return 422, "InputError"
    if isinstance(exc, LMTimeoutError):
        return 504, type(exc).__name__
    if isinstance(exc, (LMError, ParseError)):
        return 502, type(exc).__name__
    if isinstance(exc, ArtifactError):
        return 404, "ArtifactError"
    if isinstance(exc, ConfigError):
        return 500, "ConfigError"
    return 500, type(exc).__name__


def _outputs(result: Any) -> dict[str, Any]:
    from pydantic_core import to_jsonable_python

    outputs = {str(k): v for k, v in result.items()} if isinstance(result, Mapping) else {"output": result}
    # What a forward returns may be anything: a date, a set, NaN (which JSON has no word for).
    jsonable: dict[str, Any] = to_jsonable_python(
        {k: _types.to_jsonable(v) for k, v in outputs.items()}, fallback=str, inf_nan_mode="null"
    )
    return jsonable


def _usage(result: Any) -> dict[str, Any] | None:
    return result.usage.model_dump(mode="json") if isinstance(result, Prediction) else None


class _Limits:
    """At most ``n`` programs at once, each in a worker thread; the rest wait up to ``queue_timeout`` s, then 503.

    The semaphore belongs to one event loop, so it is made on first use in each loop (a test
    client starts its own; uvicorn runs one). The threads are the app's own ``n`` workers.
    """

    def __init__(self, n: int, queue_timeout: float) -> None:
        self.n = n
        self.queue_timeout = queue_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(n)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def acquire(self) -> None:
        """Take a slot, waiting up to ``queue_timeout`` seconds.

        Raises:
            _Failure: 503 when no slot came free in time.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._slots = loop, asyncio.Semaphore(self.n)
        if not self._slots.locked():  # only a wait pays for a timeout
            await self._slots.acquire()
            return
        try:
            async with _deadline(self.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise _Failure(
                503,
                "Busy",
                f"{self.n} requests are running and none finished within {self.queue_timeout}s; retry later",
            ) from None

    def release(self) -> None:
        """Give a slot back."""
        self._slots.release()

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any], overlay: list[tuple[Any, Any]]) -> Any:
        """Run ``fn(**kwargs)`` in a slot, in a worker thread, under oobleck's settings (``overlay``)."""
        await self.acquire()
        try:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.n, thread_name_prefix="oobleck-serve")
            # The program blocks (LM calls), so it runs in a worker thread, in a copy of the
            # request's context over which _run lays oobleck's settings.
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, context.run, functools.partial(_run, fn, kwargs, overlay))
        finally:
            self.release()


def _deadline(seconds: float) -> Any:
    """A block that raises TimeoutError after ``seconds`` (asyncio's own where it has one: cheaper)."""
    if sys.version_info >= (3, 11):
        return asyncio.timeout(seconds)
    import anyio

    return _AsyncWith(anyio.fail_after(seconds))


class _AsyncWith:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __aenter__(self) -> None:
        self.inner.__enter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)


def _run(fn: Callable[..., Any], kwargs: dict[str, Any], overlay: list[tuple[Any, Any]]) -> Any:
    for var, value in overlay:
        var.set(value)
    return fn(**kwargs)


def _validated(target: Target, data: Any, what: str = "the body") -> dict[str, Any]:
    if not isinstance(data, dict):
        got = "an empty body" if data is None else f"a JSON {type(data).__name__}"
        example = json.dumps({n: "..." for n in (target.input_names or ["..."])})
        raise _Failure(400, "BadRequest", f"expected {what} to be a JSON object of inputs like {example}, got {got}")
    if target.inputs is None:
        if target.accepts is not None:
            try:
                target.accepts.bind(**data)
            except TypeError as exc:
                raise InputError(f"the inputs do not fit the program ({exc}); expected {target.input_names}") from None
        return data
    try:
        model = target.inputs.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            where = ".".join(str(p) for p in e["loc"]) or "inputs"
            problems.append(
                f"unexpected input {where!r}" if e["type"] == "extra_forbidden" else f"{where}: {e['msg'].lower()}"
            )
        raise InputError(
            f"the inputs do not fit the signature ({'; '.join(problems)}); expected exactly {target.input_names}"
        ) from None
    return {info.alias or name: getattr(model, name) for name, info in type(model).model_fields.items()}


def asgi_app(
    program_or_artifact_path: Artifact | Module | str | os.PathLike[str],
    *,
    token: str | None = None,
    max_concurrency: int = MAX_CONCURRENCY,
    queue_timeout: float = QUEUE_TIMEOUT,
    max_body_bytes: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
    max_batch: int = MAX_BATCH,
    lm: LM | None = None,
    tools: Any = None,
) -> FastAPI:
    """An ASGI app (FastAPI) that runs a program on JSON requests; mount it in your service or run it.

    Endpoints (all JSON; see ``/docs``):

    - ``GET /health``: liveness, never guarded by the token, no LM call.
    - ``GET /``: what the program takes and returns.
    - ``POST /``: run the whole program on an object of inputs; answers its outputs, with the
      usage in the ``X-Oobleck-Usage`` header.
    - ``POST /predictors/<name>``: run one predictor (the only way into an artifact saved from
      your own class, whose ``forward`` the file does not hold).
    - ``POST /batch`` and ``POST /predictors/<name>/batch``: a list of up to ``max_batch``
      input objects; answers a list of ``{"status", "outputs" | "error", "usage"}`` in order,
      one failed input failing only itself.
    - ``POST /stream`` and ``POST /predictors/<name>/stream``: server-sent events, each output
      field's text as it is decoded, then the prediction (see :mod:`oobleck.serve._stream`).
    - ``GET /openapi.json`` and ``GET /docs``: the schema, with each predictor's inputs and
      outputs as models generated from its signature's types.

    Errors are ``{"error": {"type": ..., "message": ...}}``: 400 a body that is not JSON or not
    an object (or list, for a batch), 401 a missing or wrong bearer token, 404 no such path or
    predictor (or a program with no ``forward``), 405 a wrong method, 408 a body slower than
    ``body_timeout``, 411 no length, 413 a body over ``max_body_bytes`` or a batch over
    ``max_batch``, 422 inputs that do not fit the signature, 502 an LM failure or an unreadable
    answer, 503 at the concurrency limit after ``queue_timeout`` (with ``Retry-After``), 504 an
    LM timeout, 500 no LM.

    The oobleck settings in force where the app is built (``oobleck.context(lm=...)``, a budget)
    apply to every request; everything else in the request's context (an OpenTelemetry span of
    your service, say) is the request's own.

    Args:
        program_or_artifact_path: an artifact's path, a loaded Artifact, or a Module.
        token: when set, every request but ``GET /health`` needs ``Authorization: Bearer <token>``.
            The app does not know where it is bound: :func:`oobleck.serve.serve` refuses to
            listen beyond loopback without one; mounted in your service, your auth applies.
        max_concurrency: programs running at once; more requests wait for a slot.
        queue_timeout: seconds a request waits for a slot before a 503.
        max_body_bytes: the largest request body accepted.
        body_timeout: seconds a request body may take to arrive.
        max_batch: the most inputs in one batch request.
        lm: the LM for every predictor (otherwise the context's, or the one given to ``load``);
            the app runs a copy of a program given with one, so yours keeps its own LM.
        tools: an agent's tools, when loading an artifact path (see :func:`oobleck.load`).

    Returns:
        A ``fastapi.FastAPI`` app.

    Raises:
        ConfigError: FastAPI is not installed (``pip install 'oobleck[serve]'``), a limit that is
            not a finite positive number, or a token that is empty or that no client can send
            (whitespace at an end, a control character).
        ArtifactError: the artifact could not be loaded.

    Example:
        >>> app = oobleck.asgi_app("qa.json", lm=oobleck.LocalLM())     # doctest: +SKIP
        >>> host_app.mount("/qa", app)                                   # doctest: +SKIP
    """
    try:
        import fastapi  # noqa: F401 - checked here, used by the modules below
    except ImportError as exc:
        raise ConfigError("serving needs FastAPI and uvicorn: pip install 'oobleck[serve]'") from exc
    check_limits(
        max_concurrency=max_concurrency,
        queue_timeout=queue_timeout,
        max_body_bytes=max_body_bytes,
        body_timeout=body_timeout,
        max_batch=max_batch,
    )
    if token is not None and not token.strip():
        raise ConfigError(
            "token= is empty; give a long random string (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    if token is not None and (token != token.strip() or any(ch < " " or ch == "\x7f" for ch in token)):
        # HTTP strips a header's ends and cannot carry control characters: no client could send it.
        raise ConfigError(
            f"token= has {'whitespace at an end' if token != token.strip() else 'a control character'} "
            "(a newline read from a file?), which no client can send in a header; strip it"
        )
    what = served(program_or_artifact_path, lm=lm, tools=tools)
    # Only oobleck's own context variables travel from here into each request.
    overlay = [(var, value) for var, value in contextvars.copy_context().items() if var.name.startswith("oobleck")]
    handler = _Handler(what, _Limits(int(max_concurrency), float(queue_timeout)), overlay, max_body_bytes, body_timeout)
    handler.max_batch = int(max_batch)
    from oobleck.serve._fast import ServedApp

    app = ServedApp(
        title=f"oobleck: {what.description.get('class') or what.source}",
        version=__version__,
        description='A compiled oobleck program. Errors are JSON: {"error": {"type": ..., "message": ...}}.',
        redoc_url=None,
    )
    from oobleck.serve._routes import add_routes

    add_routes(app, handler, what, token=token)
    return app


class _Handler:
    """Reads a request, runs its target within the limits, and answers JSON."""

    max_batch: int = MAX_BATCH

    def __init__(
        self, what: Served, limits: _Limits, overlay: list[tuple[Any, Any]], max_body: int, body_timeout: float
    ) -> None:
        self.what = what
        self.limits = limits
        self.overlay = overlay
        self.max_body = int(max_body)
        self.body_timeout = float(body_timeout)

    @staticmethod
    def json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
        from starlette.responses import Response

        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return Response(data, status_code=status, headers=dict(headers or {}), media_type="application/json")

    def error(self, status: int, kind: str, message: str) -> Response:
        from starlette.responses import Response

        # Close after an error: a body left unread must not be read as the next request.
        headers = {"Connection": "close"}
        if status == 503:
            headers["Retry-After"] = "1"
        return Response(error_bytes(kind, message), status_code=status, headers=headers, media_type="application/json")

    async def body(self, request: Request) -> Any:
        from starlette.requests import ClientDisconnect

        length_text = request.headers.get("content-length")
        if length_text is None and "chunked" not in request.headers.get("transfer-encoding", "").lower():
            raise _Failure(411, "LengthRequired", "send a Content-Length header with the JSON body")
        if length_text is not None:
            try:
                length = int(length_text)
            except ValueError:
                raise _Failure(400, "BadRequest", f"Content-Length {length_text!r} is not a number") from None
            if length > self.max_body:
                raise _Failure(413, "PayloadTooLarge", f"the body is {length} bytes; the limit is {self.max_body}")
        chunks: list[bytes] = []
        size = 0
        try:
            async with _deadline(self.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_body:
                        raise _Failure(413, "PayloadTooLarge", f"the body is over the limit of {self.max_body} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise _Failure(408, "RequestTimeout", f"the body did not arrive within {self.body_timeout}s") from None
        except ClientDisconnect:
            raise _Failure(400, "BadRequest", "the client hung up before the body arrived") from None
        raw = b"".join(chunks)
        try:
            return json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (ValueError, RecursionError) as exc:
            raise _Failure(400, "InvalidJSON", f"the body is not valid JSON: {exc}") from None

    async def run(self, target: Target, data: Any) -> Any:
        return await self.limits.run(target.call, _validated(target, data), self.overlay)

    async def one(self, target: Target | None, request: Request) -> Response:
        """Answer ``POST`` with one object of inputs."""
        try:
            if target is None:
                raise _Failure(404, "NotRunnable", self.what.not_runnable)
            result = await self.run(target, await self.body(request))
        except _Failure as failure:
            return self.error(failure.status, failure.kind, str(failure))
        except Exception as exc:  # noqa: BLE001 - a server answers every request, in JSON
            status, kind = _status_for(exc)
            if status >= 500:
                log.warning("request failed: %s: %s", kind, exc)
            return self.error(status, kind, str(exc))
        usage = _usage(result)
        headers = {"X-Oobleck-Usage": json.dumps(usage, sort_keys=True)} if usage is not None else None
        return self.json(200, _outputs(result), headers)

    async def batch(self, target: Target | None, request: Request) -> Response:
        """Answer ``POST .../batch`` with a list of input objects, each answered on its own."""
        try:
            if target is None:
                raise _Failure(404, "NotRunnable", self.what.not_runnable)
            data = await self.body(request)
            if not isinstance(data, list):
                got = "an empty body" if data is None else f"a JSON {type(data).__name__}"
                raise _Failure(400, "BadRequest", f"a batch is a JSON list of input objects, got {got}")
            if len(data) > self.max_batch:
                raise _Failure(413, "BatchTooLarge", f"the batch has {len(data)} inputs; the limit is {self.max_batch}")
        except _Failure as failure:
            return self.error(failure.status, failure.kind, str(failure))
        items = await asyncio.gather(*(self._item(target, i, item) for i, item in enumerate(data)))
        return self.json(200, items)

    async def _item(self, target: Target, index: int, data: Any) -> dict[str, Any]:
        try:
            result = (
                await self.run(target, data) if isinstance(data, dict) else _validated(target, data, f"item {index}")
            )
        except _Failure as failure:
            return {"status": failure.status, "error": {"type": failure.kind, "message": str(failure)}}
        except Exception as exc:  # noqa: BLE001 - one input's failure is its own
            status, kind = _status_for(exc)
            if status >= 500:
                log.warning("batch item %d failed: %s: %s", index, kind, exc)
            return {"status": status, "error": {"type": kind, "message": str(exc)}}
        return {"status": 200, "outputs": _outputs(result), "usage": _usage(result)}


#: Re-exported for the routes module (one definition of the error body's model).
ERROR_MODEL = ErrorBody
