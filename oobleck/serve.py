"""Serve a frozen artifact over HTTP with the standard library: JSON inputs in, JSON outputs out.

Endpoints:

- ``GET /health``: ``{"status": "ok", ...}`` (liveness; no LM call).
- ``GET /``: what the program takes and returns (predictors, their inputs and outputs).
- ``POST /``: run the whole program on a JSON object of inputs; the body of the answer is the
  JSON object of outputs, and the usage is in the ``X-Oobleck-Usage`` header.
- ``POST /predictors/<name>``: run one predictor (for artifacts saved from your own class,
  whose ``forward`` the file does not hold).

Every answer is JSON, errors included: ``{"error": {"type": ..., "message": ...}}`` with 400
for a body that is not a JSON object (or a malformed request line or header), 401 for a missing
or wrong bearer token, 404/405/408/411/413/431 as usual, 422 for inputs that do not fit the
signature, 502 when the LM failed or answered unreadably, 503 when the server is at its
concurrency limit (with Retry-After), 504 when the LM timed out, 500 when the server has no LM.

Fit to embed: a listen backlog of ``backlog`` connections, a per-connection socket timeout (a
stalled or silent client is dropped after ``conn_timeout`` seconds), at most ``max_inflight``
programs running at once (others wait up to ``queue_timeout`` seconds, then get 503) and at most
``max_connections`` open connections. It binds 127.0.0.1 unless told otherwise; bound to any
other interface it requires a bearer ``token`` unless ``allow_no_token=True`` is given
(then it warns loudly). Each request runs in a copy of the context the server was created in,
so ``oobleck.context(lm=...)`` around :func:`make_server` applies to every request. For traffic
from the internet, put a reverse proxy (TLS, rate limits) in front: see the README's Security
section.
"""

from __future__ import annotations

import contextvars
import hmac
import ipaddress
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import unquote

from oobleck import _types
from oobleck._version import __version__
from oobleck.artifact import Artifact, load
from oobleck.errors import (
    ArtifactError,
    ConfigError,
    InputError,
    LMError,
    LMTimeoutError,
    ParseError,
)
from oobleck.example import Prediction
from oobleck.lm.base import LM

__all__ = ["is_loopback", "make_server", "serve"]

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
BACKLOG = 512
CONN_TIMEOUT = 30.0
MAX_INFLIGHT = 16
MAX_CONNECTIONS = 512
QUEUE_TIMEOUT = 30.0


class _Failure(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: Any, *, backlog: int, max_connections: int) -> None:
        self.request_queue_size = backlog
        self.max_connections = max_connections
        self._open = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection, but never more than max_connections of them: a connection
        # over the limit gets a 503 at once instead of a thread.
        if not self._open.acquire(blocking=False):
            _refuse(request, self.max_connections)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._open.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._open.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up is not the server's problem: log it instead of printing to stderr.
        log.debug("connection from %s ended abruptly", client_address, exc_info=True)  # noqa: LOG014 - called inside socketserver's except block


def _refuse(sock: Any, limit: int) -> None:
    body = json.dumps({"error": {"type": "Busy", "message": f"the server has {limit} open connections; retry shortly"}})
    data = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}"
    ).encode()
    try:
        sock.settimeout(1.0)
        sock.sendall(data)
    except OSError:
        pass


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback interface (127.0.0.0/8, ::1 or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _outputs(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        return {str(k): _types.to_jsonable(v) for k, v in result.items()}
    return {"output": _types.to_jsonable(result)}


def _describe(artifact: Artifact) -> dict[str, Any]:
    return {
        "class": artifact.class_path,
        "runnable": artifact.runnable,
        "inputs": artifact.input_names,
        "predictors": {
            name: {
                "inputs": list(p.signature.input_fields),
                "outputs": list(p.signature.output_fields),
                "instructions": p.instructions,
            }
            for name, p in artifact.predictors.items()
        },
        "provenance": artifact.provenance,
        "oobleck_version": __version__,
    }


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


@dataclass(frozen=True)
class _Settings:
    """What every request of one server reads: the program, its context and the limits."""

    artifact: Artifact
    snapshot: contextvars.Context
    slots: threading.BoundedSemaphore
    expected: bytes | None  # the whole Authorization header a request must send, if any
    max_body: int
    max_inflight: int
    queue_timeout: float


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests; :func:`make_server` subclasses it with the server's settings."""

    server_version = f"oobleck/{__version__}"
    protocol_version = "HTTP/1.1"
    settings: ClassVar[_Settings]

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, header too long, unsupported
        # method, 408) are HTML by default: answer them in JSON like every other error.
        # A client's mistake is a 4xx: an unknown method is 405, an unknown HTTP version 400.
        kinds = {
            400: "BadRequest",
            408: "RequestTimeout",
            414: "URITooLong",
            431: "HeadersTooLarge",
            501: "MethodNotAllowed",
            505: "BadRequest",
        }
        status = {501: 405, 505: 400}.get(code, code)
        if not self.request_version.startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"  # answer with a status line even to a garbled request
        try:
            self._error(status, kinds.get(code, "HTTPError"), message or explain or f"HTTP {code}")
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, kind: str, message: str) -> None:
        # Close after an error: an unread body must not be parsed as the next request.
        self.close_connection = True
        headers = {"Connection": "close"}
        if status == 503:
            headers["Retry-After"] = "1"
        self._send(status, {"error": {"type": kind, "message": message}}, headers)

    def _authorized(self) -> bool:
        expected = self.settings.expected
        if expected is None:
            return True
        given = (self.headers.get("Authorization") or "").encode("utf-8", "replace")
        if hmac.compare_digest(given, expected):
            return True
        self.close_connection = True
        self._send(
            401,
            {
                "error": {
                    "type": "Unauthorized",
                    "message": "send Authorization: Bearer <token> (the token the server was started with)",
                }
            },
            {"WWW-Authenticate": 'Bearer realm="oobleck"', "Connection": "close"},
        )
        return False

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/health" and not self._authorized():
            return
        if path == "/health":
            self._send(
                200,
                {"status": "ok", "oobleck_version": __version__, "predictors": list(self.settings.artifact.predictors)},
            )
        elif path == "/":
            self._send(200, _describe(self.settings.artifact))
        else:
            self._error(404, "NotFound", f"no such path {path!r}; try GET /health, GET / or POST /")

    def do_POST(self) -> None:
        if not self._authorized():
            return
        settings = self.settings
        try:
            target = self._target()
            inputs = self._read_inputs()
            if not settings.slots.acquire(timeout=settings.queue_timeout):
                raise _Failure(
                    503,
                    "Busy",
                    f"{settings.max_inflight} requests are running and none finished within "
                    f"{settings.queue_timeout}s; retry later",
                )
            try:
                result = settings.snapshot.copy().run(target, **inputs)
            finally:
                settings.slots.release()
        except _Failure as failure:
            self._error(failure.status, failure.kind, str(failure))
            return
        except Exception as exc:  # noqa: BLE001 - a server answers every request, in JSON
            status, kind = _status_for(exc)
            if status >= 500:
                log.warning("request failed: %s: %s", kind, exc)
            self._error(status, kind, str(exc))
            return
        headers = {}
        if isinstance(result, Prediction):
            headers["X-Oobleck-Usage"] = json.dumps(result.usage.model_dump(mode="json"), sort_keys=True)
        self._send(200, _outputs(result), headers)

    def _target(self) -> Any:
        artifact = self.settings.artifact
        path = self.path.split("?", 1)[0]
        if path == "/":
            if not artifact.runnable:
                raise _Failure(
                    404,
                    "NotRunnable",
                    f"this artifact was saved from {artifact.class_path}, whose forward() it does not hold; "
                    f"POST to /predictors/<name> for name in {list(artifact.predictors)}",
                )
            return artifact.__call__
        prefix = "/predictors/"
        if path.startswith(prefix):
            name = unquote(path[len(prefix) :])
            if name not in artifact.predictors:
                raise _Failure(404, "NotFound", f"no predictor {name!r}; the artifact has {list(artifact.predictors)}")
            return artifact.predictors[name].__call__
        raise _Failure(404, "NotFound", f"no such path {path!r}; POST to / or /predictors/<name>")

    def _read_inputs(self) -> dict[str, Any]:
        max_body = self.settings.max_body
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise _Failure(411, "LengthRequired", "send a Content-Length header with the JSON body")
        try:
            length = int(length_text)
        except ValueError:
            raise _Failure(400, "BadRequest", f"Content-Length {length_text!r} is not a number") from None
        if length < 0:
            raise _Failure(400, "BadRequest", f"Content-Length {length_text!r} is negative")
        if length > max_body:
            raise _Failure(413, "PayloadTooLarge", f"the body is {length} bytes; the limit is {max_body}")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            raise _Failure(408, "RequestTimeout", f"the body did not arrive within {self.timeout}s") from None
        if len(raw) < length:
            raise _Failure(400, "BadRequest", f"the body ended after {len(raw)} of {length} bytes")
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (ValueError, RecursionError) as exc:
            raise _Failure(400, "InvalidJSON", f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            got = "an empty body" if data is None else f"a JSON {type(data).__name__}"
            names = self.settings.artifact.input_names or ["..."]
            example = json.dumps({n: "..." for n in names})
            raise _Failure(400, "BadRequest", f"expected a JSON object of inputs like {example}, got {got}")
        return data

    def do_PUT(self) -> None:
        self._error(405, "MethodNotAllowed", "use GET /health, GET / or POST /")

    do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_PUT


def make_server(
    artifact: Artifact,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body: int = MAX_BODY,
    token: str | None = None,
    allow_no_token: bool = False,
    backlog: int = BACKLOG,
    conn_timeout: float = CONN_TIMEOUT,
    max_inflight: int = MAX_INFLIGHT,
    max_connections: int = MAX_CONNECTIONS,
    queue_timeout: float = QUEUE_TIMEOUT,
) -> ThreadingHTTPServer:
    """An HTTP server for ``artifact`` (call ``serve_forever()``; port 0 picks a free port).

    Args:
        artifact: a loaded artifact.
        host: the interface to bind; 127.0.0.1 by default (pass 0.0.0.0 deliberately).
        port: the TCP port.
        max_body: the largest request body accepted, in bytes.
        token: when set, every request but ``GET /health`` needs ``Authorization: Bearer <token>``.
        allow_no_token: bind beyond loopback without a token (warned about loudly).
        backlog: the listen queue length (connections waiting to be accepted).
        conn_timeout: seconds a connection may stay silent (reading a request, or idle
            between keep-alive requests) before it is closed.
        max_inflight: programs running at once; more requests wait for a slot.
        max_connections: open connections at once; more get an immediate 503.
        queue_timeout: how long a request waits for a slot before a 503.

    Raises:
        ConfigError: bound beyond loopback without a token (and without ``allow_no_token``),
            or a limit that is not positive.

    Example:
        >>> server = make_server(oobleck.load("qa.json"), port=0)    # doctest: +SKIP
        >>> threading.Thread(target=server.serve_forever).start()    # doctest: +SKIP
    """
    if min(backlog, max_inflight, max_connections) < 1 or min(conn_timeout, queue_timeout) <= 0:
        raise ConfigError("backlog, max_inflight, max_connections, conn_timeout and queue_timeout must be positive")
    if token is not None and not token.strip():
        raise ConfigError(
            "token= is empty; give a long random string (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    if token is None and not is_loopback(host):
        message = (
            f"serving on {host} without a token: anyone who can reach this port can run the program "
            "and spend your LM budget; pass token= (--token / $OOBLECK_SERVE_TOKEN) or bind 127.0.0.1"
        )
        if not allow_no_token:
            raise ConfigError(message + " (or allow_no_token=True / --no-token to accept the risk)")
        warnings.warn(message, stacklevel=2)
        log.warning(message)
    settings = _Settings(
        artifact=artifact,
        snapshot=contextvars.copy_context(),
        slots=threading.BoundedSemaphore(max_inflight),
        expected=f"Bearer {token}".encode() if token is not None else None,
        max_body=max_body,
        max_inflight=max_inflight,
        queue_timeout=queue_timeout,
    )
    handler = type("Handler", (_Handler,), {"timeout": conn_timeout, "settings": settings})
    try:
        return _Server((host, port), handler, backlog=backlog, max_connections=max_connections)
    except (OSError, OverflowError, TypeError) as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc}); choose another --host/--port (0 picks a free port)"
        ) from None


def serve(
    artifact: Artifact | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    lm: LM | None = None,
    on_listen: Callable[[str], object] | None = None,
    **options: Any,
) -> None:
    """Load (if given a path) and serve an artifact until interrupted.

    Args:
        artifact: a loaded artifact or the path of one.
        host: the interface to bind (127.0.0.1 by default).
        port: the TCP port (0 picks a free one).
        lm: the LM for every predictor (otherwise the current ``oobleck.context``'s).
        on_listen: called with the server's URL once it listens (before serving).
        **options: the limits and token of :func:`make_server`.
    """
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, lm=lm)
    elif lm is not None:
        artifact.program.set_lm(lm)
    server = make_server(artifact, host=host, port=port, **options)
    host_, port_ = server.server_address[:2]
    url = f"http://{host_!s}:{port_}"
    log.info("serving %s on %s", artifact.source, url)
    if on_listen is not None:
        on_listen(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
