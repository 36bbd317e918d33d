"""Run the app under uvicorn: bind the socket, check the exposure, drain on SIGTERM/SIGINT.

:class:`Server` binds at construction (so a bad address is a ConfigError before anything runs
and port 0 is known at once), then runs uvicorn with the protocol and signal handling of
:mod:`oobleck.serve._protocol`: a headers deadline and a connection cap against slow or
hostile clients, JSON for the requests the parser refuses, and a stop that finishes the
requests in flight and returns normally (exit status 0), however the process was started.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import warnings
from typing import TYPE_CHECKING

from oobleck.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["BACKLOG", "CONN_TIMEOUT", "MAX_CONNECTIONS", "Server", "check_exposure", "is_loopback"]

log = logging.getLogger("oobleck.serve")

BACKLOG = 512
CONN_TIMEOUT = 30.0
MAX_CONNECTIONS = 512


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback interface (127.0.0.0/8, ::1 or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, allow_no_token: bool) -> None:
    """Refuse to listen beyond loopback without a token, unless told to (then warn loudly).

    Raises:
        ConfigError: ``host`` is not loopback, no token, and no ``allow_no_token``.
    """
    if token is not None or is_loopback(host):
        return
    message = (
        f"serving on {host} without a token: anyone who can reach this port can run the program "
        "and spend your LM budget; pass token= (--token / $OOBLECK_SERVE_TOKEN) or bind 127.0.0.1"
    )
    if not allow_no_token:
        raise ConfigError(message + " (or allow_no_token=True / --no-token to accept the risk)")
    warnings.warn(message, stacklevel=3)
    log.warning(message)


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one).

    Raises:
        ConfigError: the address cannot be bound (in use, not an interface here, bad port).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer from 0 to 65535 (0 picks a free port), got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
    except (OSError, OverflowError, TypeError, UnicodeError) as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc}); choose another --host/--port (0 picks a free port)"
        ) from None
    sock.setblocking(False)
    return sock


class Server:
    """One app served by uvicorn on a socket bound at construction.

    ``serve_forever()`` runs until ``shutdown()`` (from another thread) or, in the main thread,
    SIGTERM or SIGINT: then it stops accepting, lets the requests in flight finish (up to
    ``drain_timeout`` seconds, forever when None; a second SIGINT cuts the drain short) and
    returns. The same methods as a ``socketserver`` server, so code written for the old
    standard-library server keeps working.

    Attributes:
        server_address: the bound ``(host, port)``.
        url: ``http://host:port``.
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str,
        port: int,
        backlog: int = BACKLOG,
        conn_timeout: float = CONN_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        drain_timeout: float | None = None,
    ) -> None:
        try:
            import uvicorn
        except ImportError as exc:
            raise ConfigError("serving needs FastAPI and uvicorn: pip install 'oobleck[serve]'") from exc

        from oobleck.serve._protocol import MAX_HEADER_BYTES, DrainingServer, guarded_protocol

        self._sock = bind(host, port, backlog)
        try:  # nothing after the bind may leave the port taken
            address = self._sock.getsockname()
            self.server_address: tuple[str, int] = (str(address[0]), int(address[1]))
            shown = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
            self.url = f"http://{shown}:{address[1]}"
            config = uvicorn.Config(
                app,
                http=guarded_protocol(conn_timeout=conn_timeout, max_connections=max_connections),
                lifespan="off",
                log_config=None,  # the application's logging stays as the application set it
                access_log=False,
                h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                server_header=False,
                backlog=backlog,
                timeout_keep_alive=conn_timeout,  # type: ignore[arg-type]  # a float works: call_later
                timeout_graceful_shutdown=None if drain_timeout is None else math.ceil(drain_timeout),
            )
            self._server = DrainingServer(config)
        except BaseException:
            self._sock.close()
            raise
        self._running = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Serve until shut down or signalled; ``poll_interval`` is accepted for compatibility."""
        self._running.set()
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (draining the requests in flight) and wait until ``serve_forever`` returns."""
        self._server.should_exit = True
        if self._running.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket."""
        self._sock.close()
