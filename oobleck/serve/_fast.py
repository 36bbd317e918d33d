"""The app class: a FastAPI app whose program endpoints skip the middleware stack when nothing needs it.

Answering ``POST /`` through FastAPI's and Starlette's layers (error and exception middleware,
telemetry, body limits, the router's linear match) cost about as much CPU per request as the
rest of the request together (``benchmarks/serve.py``). The program endpoints read, validate
and answer every request themselves, so :class:`ServedApp` calls them straight from a path
table, as long as no middleware was added to the app beyond oobleck's own token guard and the
request carries the token. Anything else (a user's middleware, another path, a missing token)
takes the full stack, so the app behaves the same either way.
"""

from __future__ import annotations

import hmac
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ServedApp"]

Endpoint = Callable[[Request], Awaitable[Response]]


class ServedApp(FastAPI):
    """A FastAPI app with a direct path for oobleck's program endpoints (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct: dict[str, Endpoint] = {}
        self.expected: bytes | None = None  # the Authorization header the token guard wants
        self.own_middleware = 0

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        """Serve a program request directly when nothing else must see it; otherwise as FastAPI does.

        With OpenTelemetry on (:mod:`oobleck.otel`), each HTTP request is a SERVER span around
        it, parent of the program's spans.
        """
        if scope["type"] == "http" and "opentelemetry.trace" in sys.modules:
            from oobleck import otel

            span_cm = otel.http_server_span(scope["method"], self._route(scope))
            if span_cm is not None:
                with span_cm as span:

                    async def sending(message: MutableMapping[str, Any]) -> None:
                        if message["type"] == "http.response.start":
                            span.set_attribute("http.response.status_code", message["status"])
                            if message["status"] >= 500:
                                from opentelemetry.trace import Status, StatusCode

                                span.set_status(Status(StatusCode.ERROR))
                        await send(message)

                    await self._serve(scope, receive, sending)
                return
        await self._serve(scope, receive, send)

    async def _serve(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and len(self.user_middleware) == self.own_middleware:
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :] or "/"
            endpoint = self.direct.get(path)
            if endpoint is not None and self._authorized(scope):
                scope["app"] = self
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _route(self, scope: MutableMapping[str, Any]) -> str | None:
        """The route a request takes, for its span: one of the app's own paths, else None.

        A path the app does not serve is the client's to choose: naming a span by it would make
        names (and ``http.route``) as many as the paths clients send.
        """
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        known = path in self.direct or path in ("/health", "/openapi.json", "/docs", "/docs/oauth2-redirect")
        return path if known else None

    def _authorized(self, scope: MutableMapping[str, Any]) -> bool:
        if self.expected is None:
            return True
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                return hmac.compare_digest(value, self.expected)
        return False
