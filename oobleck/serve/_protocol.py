"""What oobleck adds to uvicorn: a headers deadline, a connection cap, JSON parse errors, a clean drain.

Imported only when a server is made (it imports uvicorn and h11, the ``serve`` extra).

- uvicorn has no deadline for a request's headers: its keep-alive timer restarts on every byte,
  so a client that dribbles one header byte a second holds its connection forever, and enough
  of them exhaust the file descriptors. Here a connection must finish each request's headers
  within ``conn_timeout`` seconds of opening (or of its previous answer), or it is closed.
- Connections beyond ``max_connections`` get a JSON 503 at once.
- A request h11 refuses (two different ``Content-Length`` headers, a malformed line, a path or
  headers over 64 KiB, an HTTP version other than 1.0/1.1) gets a JSON 400, 414 or 431 instead
  of uvicorn's plain text.
- uvicorn finishes the requests in flight on SIGINT or SIGTERM, then re-raises the signal, so
  the process dies *by* it (status 143 on SIGTERM). :class:`DrainingServer` returns instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from oobleck.serve._app import error_bytes

__all__ = ["MAX_HEADER_BYTES", "DrainingServer", "GuardedH11Protocol", "guarded_protocol", "raw_response"]

log = logging.getLogger("oobleck.serve")

MAX_HEADER_BYTES = 64 * 1024  # the request line and the headers together
_REASONS = {
    400: ("Bad Request", "BadRequest"),
    414: ("URI Too Long", "URITooLong"),
    431: ("Request Header Fields Too Large", "HeadersTooLarge"),
    501: ("Not Implemented", "NotImplemented"),
    503: ("Service Unavailable", "Busy"),
}


def raw_response(status: int, message: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 JSON error answer, written straight to the socket (which then closes)."""
    reason, kind = _REASONS.get(status, _REASONS[400])
    body = error_bytes(kind, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _refusal(request: h11.Request) -> tuple[int, str] | None:
    # h11 bounds a request's headers only while they are incomplete: a whole one that arrives
    # in a single read (asyncio reads up to 256 KiB) is checked here.
    if request.http_version not in (b"1.0", b"1.1"):
        return 400, f"HTTP/{request.http_version.decode('ascii', 'replace')} is not supported; send HTTP/1.1"
    if len(request.target) > MAX_HEADER_BYTES:
        return 414, f"the path is {len(request.target)} bytes; the limit is {MAX_HEADER_BYTES}"
    size = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers.raw_items())
    if size > MAX_HEADER_BYTES:
        return 431, f"the headers are {size} bytes; the limit is {MAX_HEADER_BYTES}"
    return None


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a headers deadline, a connection cap and JSON parse errors.

    :func:`guarded_protocol` subclasses it with the two settings.
    """

    conn_timeout: float = 30.0
    max_connections: int = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_for: object = None
        self._refusal: tuple[int, str] | None = None
        self._refused = False
        receive = self.conn.next_event

        def next_event() -> Any:
            # uvicorn drops h11's reason and status hint; keep them for the JSON answer.
            try:
                event = receive()
            except h11.RemoteProtocolError as exc:
                self._refusal = (exc.error_status_hint, str(exc))
                raise
            if isinstance(event, h11.Request):
                self._refusal = _refusal(event)
                if self._refusal is not None:
                    raise h11.RemoteProtocolError(self._refusal[1])
            return event

        self.conn.next_event = next_event  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            message = f"the server has {self.max_connections} open connections; retry shortly"
            transport.write(raw_response(503, message, "retry-after: 1\r\n"))
            # Half-close, and close a moment later: closing at once would reset a client whose
            # request is still arriving, and it would never read the answer.
            self._refused = True
            if transport.can_write_eof():
                transport.write_eof()
            self.loop.call_later(1.0, transport.close)
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle
        self._deadline = self.loop.call_later(self.conn_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        # Close only a connection with no request under way: one that began a request since
        # the timer was armed (a new cycle) is the app's to time out (its body deadline).
        self._deadline = None
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.cycle is self._armed_for and not self.transport.is_closing():
            log.debug("closing %s: no complete request within %ss", self.client, self.conn_timeout)
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        status, detail = self._refusal or (400, msg)
        self.transport.write(raw_response(status, f"the request is malformed: {detail}"))
        self.transport.close()


def guarded_protocol(*, conn_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, carrying these settings."""
    settings = {"conn_timeout": float(conn_timeout), "max_connections": int(max_connections)}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), settings)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with SIGINT and SIGTERM handlers that drain and then return."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install the handlers whatever the inherited disposition; never re-raise after the drain.

        A background job of a shell starts with SIGINT ignored, and a stop that drained cleanly
        is a normal exit (0), not a death by signal.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """First signal: stop accepting and drain; a second SIGINT cuts the drain short."""
        if not self.should_exit:
            log.info(
                "%s: finishing %d request(s) in flight, then stopping",
                signal.Signals(sig).name,
                len(self.server_state.tasks),
            )
        super().handle_exit(sig, frame)
