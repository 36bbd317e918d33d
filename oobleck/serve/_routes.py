"""The app's routes, its bearer-token guard, its JSON error handlers and its OpenAPI document."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import pydantic
from pydantic.json_schema import models_json_schema

from oobleck._version import __version__
from oobleck.serve._app import ASGIApp, Message, Scope, _Handler, error_bytes
from oobleck.serve._models import ErrorBody, Served, Target
from oobleck.serve._stream import EVENTS, stream

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

    from oobleck.serve._fast import ServedApp

__all__ = ["add_routes"]

Kind = Literal["call", "batch", "stream"]

_KINDS = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 422: "InputError"}
_ERRORS = {
    "400": "the body is not JSON, or not an object of inputs",
    "401": "a missing or wrong bearer token",
    "404": "no such predictor, or the program has no forward()",
    "408": "the body was too slow to arrive",
    "411": "no Content-Length",
    "413": "the body (or the batch) is too large",
    "422": "the inputs do not fit the signature",
    "502": "the LM failed, or its answer did not parse",
    "503": "every slot is busy (see Retry-After)",
    "504": "the LM timed out",
}


class BearerGuard:
    """ASGI middleware: every HTTP request but ``GET /health`` needs ``Authorization: Bearer <token>``.

    It runs before routing, so an unknown path without the token is a 401 too (nothing about
    the program leaks to a caller without it). The comparison takes constant time.
    """

    def __init__(self, app: ASGIApp, *, expected: bytes) -> None:
        self.app = app
        self.expected = expected

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http" or _route_path(scope) == "/health":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                given = value
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        body = error_bytes("Unauthorized", "send Authorization: Bearer <token> (the token the server was started with)")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="oobleck"'),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _route_path(scope: Scope) -> str:
    # Mounted under a prefix, the path still carries it and root_path names it (as Starlette does).
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def add_routes(app: ServedApp, handler: _Handler, what: Served, *, token: str | None) -> None:
    """Add the endpoints, the error handlers, the token guard and the OpenAPI document to ``app``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.requests import Request as RequestClass
    from starlette.responses import Response as ResponseClass

    def typed(fn: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        # FastAPI reads the endpoint's annotations, which are strings here: give it the classes.
        fn.__annotations__ = {
            k: RequestClass if k == "request" else ResponseClass
            for k in fn.__annotations__
            if k in ("request", "return")
        }
        return fn

    bodies: dict[str, tuple[Target | None, Kind, str]] = {}  # path -> (target, kind, summary), for the schema

    async def health() -> Response:
        return handler.json(200, {"status": "ok", "oobleck_version": __version__, "predictors": list(what.predictors)})

    async def describe() -> Response:
        return handler.json(200, what.description)

    app.add_api_route("/health", typed(health), methods=["GET"], summary="Liveness (no LM call, no token needed)")
    app.add_api_route("/", typed(describe), methods=["GET"], summary="What the program takes and returns")

    def add(path: str, target: Target | None, *, kind: Kind, summary: str) -> None:
        async def endpoint(request: Request) -> Response:
            if kind == "stream":
                return await stream(handler, target, request)
            return await (handler.batch if kind == "batch" else handler.one)(target, request)

        # A plain Starlette route: the body is read and validated here, so FastAPI's request
        # machinery (dependencies, body parsing) would only add time; _openapi documents it.
        app.router.add_route(path, endpoint, methods=["POST"], include_in_schema=False)
        app.direct[path] = endpoint
        bodies[path] = (target, kind, summary)

    add("/", what.program, kind="call", summary="Run the program on one object of inputs")
    add("/batch", what.program, kind="batch", summary="Run the program on a list of input objects")
    add("/stream", what.program, kind="stream", summary="Run the program, streaming its fields as server-sent events")
    for name, target in what.predictors.items():
        add(f"/predictors/{name}", target, kind="call", summary=f"Run predictor {name!r}")
        add(f"/predictors/{name}/batch", target, kind="batch", summary=f"Run predictor {name!r} on a list of inputs")
        add(f"/predictors/{name}/stream", target, kind="stream", summary=f"Run predictor {name!r}, streaming")

    async def unknown_predictor(request: Request) -> Response:
        name = request.path_params["rest"]
        return handler.error(404, "NotFound", f"no predictor {name!r}; the program has {list(what.predictors)}")

    app.router.add_route("/predictors/{rest:path}", unknown_predictor, methods=["POST"], include_in_schema=False)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        message = {
            404: f"no such path {request.url.path!r}; try GET /health, GET /, POST / or POST /predictors/<name>",
            405: f"{request.method} is not allowed here; use GET /health, GET / or POST /",
        }.get(status, str(getattr(exc, "detail", exc)))
        return handler.error(status, _KINDS.get(status, "HTTPError"), message)

    async def invalid(request: Request, exc: Exception) -> Response:
        return handler.error(422, "InputError", str(exc))

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    if token is not None:
        app.add_middleware(BearerGuard, expected=f"Bearer {token}".encode())
        app.expected = f"Bearer {token}".encode()
    app.own_middleware = len(app.user_middleware)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi(app, what, bodies, handler.max_batch, secured=token is not None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _openapi(
    app: FastAPI, what: Served, bodies: dict[str, tuple[Target | None, Kind, str]], max_batch: int, *, secured: bool
) -> dict[str, Any]:
    """FastAPI's document for the routes, with each body and answer typed by the signature's models."""
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    keys: list[tuple[type[pydantic.BaseModel], Literal["validation", "serialization"]]] = [(ErrorBody, "serialization")]
    for m in what.models:
        keys += [(m, "validation"), (m, "serialization")]
    refs, defs = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs.get("$defs", {}))
    anything = {"type": "object", "additionalProperties": True}

    def ref(model: type[pydantic.BaseModel] | None, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        return dict(refs[(model, mode)]) if model is not None else dict(anything)

    error = {"content": {"application/json": {"schema": ref(ErrorBody, "serialization")}}}
    for path, (target, kind, summary) in bodies.items():
        operation = doc.setdefault("paths", {}).setdefault(path, {}).setdefault("post", {})
        operation.update(summary=summary, operationId=f"{kind}:{path}")
        inputs = ref(target.inputs if target else None, "validation")
        outputs = ref(target.outputs if target else None, "serialization")
        if kind == "batch":
            inputs = {"type": "array", "items": inputs, "maxItems": max_batch}
            outputs = {"type": "array", "items": ref(target.batch_item if target else None, "serialization")}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": inputs}}}
        answers: dict[str, Any] = {
            "200": {"description": "the outputs", "content": {"application/json": {"schema": outputs}}}
        }
        if kind == "stream":
            answers["200"] = {"description": EVENTS, "content": {"text/event-stream": {"schema": {"type": "string"}}}}
        for status, why in _ERRORS.items():
            if status != "401" or secured:
                answers[status] = {"description": why, **error}
        operation["responses"] = answers
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
        doc["paths"]["/health"]["get"]["security"] = []
    return doc
