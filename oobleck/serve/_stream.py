"""Server-sent events: ``POST /stream`` and ``POST /predictors/<name>/stream``.

The body is the same object of inputs as ``POST /``. The answer is ``text/event-stream``, one
event per item of ``program.astream(**inputs)``:

- ``event: chunk`` with ``{"predictor", "field", "text"}``: new text of one output field (the
  predictor named as in ``/predictors/<name>``), in the order it was decoded (a field that cannot stream arrives as one chunk, after the parse);
- ``event: prediction`` with ``{"outputs", "usage"}``: last, what ``POST /`` would have answered;
- ``event: error`` with ``{"status", "error": {"type", "message"}}``: the program failed after
  its first chunk went out (the HTTP status was already 200).

A request that fails before anything streams (bad JSON, inputs that do not fit, an LM error on
the first call, no free slot) gets the same JSON error and status as ``POST /``. The stream holds
one of the ``max_concurrency`` slots until it ends; a client that hangs up stops the program at
its next piece of text (see :mod:`oobleck.streaming`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from oobleck.example import Prediction
from oobleck.serve._app import _Failure, _Handler, _outputs, _status_for, _usage, _validated

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from oobleck.serve._models import Target

__all__ = ["EVENTS", "stream"]

log = logging.getLogger("oobleck.serve")

#: What each event's data holds, for the OpenAPI description.
EVENTS = (
    "text/event-stream: `event: chunk` (data {predictor, field, text}; `replace: true` when the text "
    "replaces the field's text so far, after a parse-repair retry) as each output field is "
    "decoded, then `event: prediction` (data {outputs, usage}); `event: error` (data {status, "
    "error}) if the program fails after streaming began"
)


def _event(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _item_event(item: Any, target: Target) -> bytes:
    if isinstance(item, Prediction) or not hasattr(item, "field"):
        return _event("prediction", {"outputs": _outputs(item), "usage": _usage(item)})
    # A predictor streamed alone calls itself "self": name it as its path does.
    predictor = target.name if target.name is not None and item.predictor == "self" else item.predictor
    data = {"predictor": predictor, "field": item.field, "text": item.text}
    if item.replace:
        data["replace"] = True
    return _event("chunk", data)


class _Closer:
    """Closes the program's stream and gives its slot back, once, whoever gets there first."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.items: Any = None
        self.acquired = False

    async def __call__(self) -> None:
        items, self.items = self.items, None
        acquired, self.acquired = self.acquired, False
        try:
            if items is not None:
                await items.aclose()
        finally:
            if acquired:
                self.handler.limits.release()


async def stream(handler: _Handler, target: Target | None, request: Request) -> Response:
    """Answer a streaming request: a JSON error before the first item, events after it."""
    from starlette.responses import StreamingResponse

    class EventStream(StreamingResponse):
        # Close even when the body never started (the client left first): a generator that
        # never ran never runs its finally.
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                await closer()

    closer = _Closer(handler)
    try:
        if target is None:
            raise _Failure(404, "NotRunnable", handler.what.not_runnable)
        served = target
        kwargs = _validated(target, await handler.body(request))
        await handler.limits.acquire()
        closer.acquired = True
        items = closer.items = target.module.astream(**kwargs)
        # The program's task starts at the first item and copies this context: lay oobleck's
        # settings over it for that moment only.
        tokens = [(var, var.set(value)) for var, value in handler.overlay]
        try:
            first = await items.__anext__()
        finally:
            for var, token in reversed(tokens):
                var.reset(token)
    except _Failure as failure:
        await closer()
        return handler.error(failure.status, failure.kind, str(failure))
    except Exception as exc:  # noqa: BLE001 - a server answers every request, in JSON
        await closer()
        status, kind = _status_for(exc)
        if status >= 500:
            log.warning("stream failed: %s: %s", kind, exc)
        return handler.error(status, kind, str(exc))

    async def events() -> AsyncIterator[bytes]:
        try:
            yield _item_event(first, served)
            async for item in items:
                yield _item_event(item, served)
        except Exception as exc:  # noqa: BLE001 - the status line is sent: the error is an event
            status, kind = _status_for(exc)
            log.warning("stream failed after it began: %s: %s", kind, exc)
            yield _event("error", {"status": status, "error": {"type": kind, "message": str(exc)}})
        finally:
            await closer()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
    return EventStream(events(), media_type="text/event-stream", headers=headers)
