"""Serve a program over HTTP: an ASGI app (FastAPI) to mount in your service, run by uvicorn.

:func:`asgi_app` builds the app; :func:`serve` (``oobleck serve``) runs it on 127.0.0.1 until
SIGTERM or SIGINT, which finish the requests in flight and then return (the command exits 0).
:func:`make_server` gives a :class:`Server` with ``serve_forever()`` / ``shutdown()`` for code
that runs it in a thread.

The contract (every answer is JSON, errors ``{"error": {"type": ..., "message": ...}}``):

- ``GET /health``, ``GET /``, ``POST /``, ``POST /predictors/<name>``, their ``/batch`` and
  ``/stream`` (server-sent events) forms, ``GET /openapi.json`` and ``GET /docs``; see
  :func:`asgi_app` for the status codes.
- Bound beyond loopback, a bearer ``token`` is required unless ``allow_no_token=True`` (warned).
- Limits: ``max_inflight`` programs at once (others wait ``queue_timeout`` s, then 503 with
  ``Retry-After``), ``max_body`` bytes per body, ``max_batch`` inputs per batch, a request's
  headers within ``conn_timeout`` s of the connection opening (or of the previous answer), its
  body within ``conn_timeout`` s too (408), ``max_connections`` open connections (then 503).
- Each request runs in a worker thread with the oobleck settings (``oobleck.context``) in force
  where the app was built.

For traffic from outside the machine put a reverse proxy (TLS, per-client rate limits) in front;
to use more cores, run several uvicorn workers (see the README's "Scaling out").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from oobleck.artifact import Artifact
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.serve._app import MAX_BATCH, MAX_BODY, MAX_CONCURRENCY, QUEUE_TIMEOUT, asgi_app, check_limits
from oobleck.serve._server import BACKLOG, CONN_TIMEOUT, MAX_CONNECTIONS, Server, check_exposure, is_loopback

__all__ = ["Server", "asgi_app", "is_loopback", "make_server", "serve"]

log = logging.getLogger("oobleck.serve")


def make_server(
    program: Artifact | Module | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    allow_no_token: bool = False,
    max_body: int = MAX_BODY,
    max_batch: int = MAX_BATCH,
    backlog: int = BACKLOG,
    conn_timeout: float = CONN_TIMEOUT,
    max_inflight: int = MAX_CONCURRENCY,
    max_connections: int = MAX_CONNECTIONS,
    queue_timeout: float = QUEUE_TIMEOUT,
    drain_timeout: float | None = None,
    lm: LM | None = None,
    tools: Any = None,
) -> Server:
    """A uvicorn server for ``program``, bound now (port 0 picks a free port); call ``serve_forever()``.

    Args:
        program: an artifact's path, a loaded Artifact, or a Module.
        host: the interface to bind; 127.0.0.1 by default (pass 0.0.0.0 deliberately).
        port: the TCP port.
        token: when set, every request but ``GET /health`` needs ``Authorization: Bearer <token>``.
        allow_no_token: bind beyond loopback without a token (warned about loudly).
        max_body: the largest request body accepted, in bytes.
        max_batch: the most inputs in one batch request.
        backlog: the listen queue length.
        conn_timeout: seconds a connection has to send a request's headers (from opening, or
            from the previous answer), and a request's body.
        max_inflight: programs running at once; more requests wait for a slot.
        max_connections: open connections at once; more get an immediate 503.
        queue_timeout: how long a request waits for a slot before a 503.
        drain_timeout: on stop, how long requests in flight may take to finish (None: as long
            as they need).
        lm: the LM for every predictor (otherwise the current ``oobleck.context``'s).
        tools: an agent's tools, when loading an artifact path.

    Raises:
        ConfigError: bound beyond loopback without a token (and without ``allow_no_token``),
            a limit that is not a finite positive number, an address that cannot be bound, or
            FastAPI/uvicorn missing (``pip install 'oobleck[serve]'``).

    Example:
        >>> server = make_server("qa.json", port=0)                   # doctest: +SKIP
        >>> threading.Thread(target=server.serve_forever).start()    # doctest: +SKIP
        >>> server.shutdown()                                        # doctest: +SKIP
    """
    check_limits(
        backlog=backlog,
        conn_timeout=conn_timeout,
        max_connections=max_connections,
        drain_timeout=drain_timeout,
    )
    check_exposure(host, token, allow_no_token)
    app = asgi_app(
        program,
        token=token,
        max_concurrency=max_inflight,
        queue_timeout=queue_timeout,
        max_body_bytes=max_body,
        body_timeout=conn_timeout,
        max_batch=max_batch,
        lm=lm,
        tools=tools,
    )
    return Server(
        app,
        host=host,
        port=port,
        backlog=int(backlog),
        conn_timeout=float(conn_timeout),
        max_connections=int(max_connections),
        drain_timeout=drain_timeout,
    )


def serve(
    program: Artifact | Module | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    lm: LM | None = None,
    on_listen: Callable[[str], object] | None = None,
    **options: Any,
) -> None:
    """Load (if given a path) and serve a program until SIGTERM, SIGINT or ``KeyboardInterrupt``.

    Returns normally once the requests in flight have finished.

    Args:
        program: an artifact's path, a loaded Artifact, or a Module.
        host: the interface to bind (127.0.0.1 by default).
        port: the TCP port (0 picks a free one).
        lm: the LM for every predictor (otherwise the current ``oobleck.context``'s).
        on_listen: called with the server's URL once it is bound (before serving); if it
            raises, the socket is closed and its error propagates.
        **options: the token and limits of :func:`make_server`.

    Raises:
        ConfigError: as :func:`make_server`.
    """
    server = make_server(program, host=host, port=port, lm=lm, **options)
    log.info("serving on %s", server.url)
    try:
        if on_listen is not None:
            on_listen(server.url)  # if it raises, the socket is closed all the same
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
