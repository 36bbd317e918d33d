"""Serve a frozen artifact over HTTP with the standard library: JSON inputs in, JSON outputs out.

Endpoints:

- ``GET /health``: ``{"status": "ok", ...}`` (liveness; no LM call).
- ``GET /``: what the program takes and returns (predictors, their inputs and outputs).
- ``POST /``: run the whole program on a JSON object of inputs; the body of the answer is the
  JSON object of outputs, and the usage is in the ``X-Oobleck-Usage`` header.
- ``POST /predictors/<name>``: run one predictor (for artifacts saved from your own class,
  whose ``forward`` the file does not hold).

Errors are JSON, ``{"error": {"type": ..., "message": ...}}``: 400 for a body that is not a JSON
object, 422 for inputs that do not fit the signature, 404/405/411/413 as usual, 502 when the LM
failed or answered unreadably, 504 when it timed out, 500 when the server has no LM. It binds
127.0.0.1 unless told otherwise. Each request runs in a copy of the context the server was
created in, so ``oobleck.context(lm=...)`` around :func:`make_server` applies to every request.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
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

__all__ = ["make_server", "serve"]

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class _Failure(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up is not the server's problem: log it instead of printing to stderr.
        log.debug("connection from %s ended abruptly", client_address, exc_info=True)  # noqa: LOG014 - called inside socketserver's except block


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


def make_server(
    artifact: Artifact,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body: int = MAX_BODY,
) -> ThreadingHTTPServer:
    """An HTTP server for ``artifact`` (call ``serve_forever()``; port 0 picks a free port).

    Args:
        artifact: a loaded artifact.
        host: the interface to bind; 127.0.0.1 by default (pass 0.0.0.0 deliberately).
        port: the TCP port.
        max_body: the largest request body accepted, in bytes.

    Example:
        >>> server = make_server(oobleck.load("qa.json"), port=0)    # doctest: +SKIP
        >>> threading.Thread(target=server.serve_forever).start()    # doctest: +SKIP
    """
    snapshot = contextvars.copy_context()

    class Handler(BaseHTTPRequestHandler):
        server_version = f"oobleck/{__version__}"
        protocol_version = "HTTP/1.1"

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
            self._send(status, {"error": {"type": kind, "message": message}}, {"Connection": "close"})

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, {"status": "ok", "oobleck_version": __version__, "predictors": list(artifact.predictors)})
            elif path == "/":
                self._send(200, _describe(artifact))
            else:
                self._error(404, "NotFound", f"no such path {path!r}; try GET /health, GET / or POST /")

        def do_POST(self) -> None:
            try:
                target = self._target()
                inputs = self._read_inputs()
                result = snapshot.copy().run(target, **inputs)
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
            length_text = self.headers.get("Content-Length")
            if length_text is None:
                raise _Failure(411, "LengthRequired", "send a Content-Length header with the JSON body")
            try:
                length = int(length_text)
            except ValueError:
                raise _Failure(400, "BadRequest", f"Content-Length {length_text!r} is not a number") from None
            if length < 0 or length > max_body:
                raise _Failure(413, "PayloadTooLarge", f"the body is {length} bytes; the limit is {max_body}")
            raw = self.rfile.read(length)
            try:
                data = json.loads(raw.decode("utf-8")) if raw.strip() else None
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                raise _Failure(400, "InvalidJSON", f"the body is not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                got = "an empty body" if data is None else f"a JSON {type(data).__name__}"
                names = artifact.input_names or ["..."]
                example = json.dumps({n: "..." for n in names})
                raise _Failure(400, "BadRequest", f"expected a JSON object of inputs like {example}, got {got}")
            return data

        def do_PUT(self) -> None:
            self._error(405, "MethodNotAllowed", "use GET /health, GET / or POST /")

        do_DELETE = do_PATCH = do_PUT

    return _Server((host, port), Handler)


def serve(
    artifact: Artifact | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    lm: LM | None = None,
) -> None:
    """Load (if given a path) and serve an artifact until interrupted.

    Args:
        artifact: a loaded artifact or the path of one.
        host: the interface to bind (127.0.0.1 by default).
        port: the TCP port.
        lm: the LM for every predictor (otherwise the current ``oobleck.context``'s).
    """
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, lm=lm)
    elif lm is not None:
        artifact.program.set_lm(lm)
    server = make_server(artifact, host=host, port=port)
    log.info("serving %s on http://%s:%s", artifact.source, *server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
