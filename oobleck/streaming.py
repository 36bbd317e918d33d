"""Streaming: a program's output fields as they are decoded, then its final prediction.

``program.stream(**inputs)`` (and ``astream``) run the program exactly as calling it would
(same requests, same parse, same cache entries, same usage and budget accounting) and yield a
:class:`StreamChunk` each time a predictor's output field gets new text, then, last, what the
call returns. How it works:

- The program runs in a worker thread (``stream``) or a task (``astream``) with a stream
  state in its context; each :class:`~oobleck.predict.Predict` call finds it there.
- Around each LM call, Predict sets :data:`oobleck.lm.base.TEXT_SINK`. A backend that streams
  (LocalLM, OpenAILM, FakeLM, TransformersLM) sends it each piece of text as it is decoded; the
  adapter's ``partial_fields`` (:class:`~oobleck.adapters.base.StreamingAdapter`) reads the
  fields out of the text so far, and what is new in each is sent on as a chunk.
- After the answer is parsed, every output field's remaining text is sent, so a field the
  backend or adapter could not stream (a backend without streaming, a cache hit, a label chosen
  whole by score mode, ``n > 1``) still arrives, once, whole. A field's chunks, joined, are its
  text as the adapter read it (for a text field: its value). When a parse-repair retry rewrites
  a field that had already been streamed, its new text comes as a chunk with ``replace=True``:
  the field is that chunk's text, and later chunks extend it again.
- A consumer that stops early (``break``, closing the iterator) closes the stream: the
  backend's stream is cut at its next piece of text (the HTTP connection is closed, the budget
  reservation settled with the call counted as sent, nothing cached), no further LM call
  starts, and ``close()`` returns once the worker has stopped.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oobleck.adapters._values import format_value
from oobleck.lm.base import TEXT_SINK
from oobleck.lm.types import LMRequest, LMResponse
from oobleck.signature import Signature

if TYPE_CHECKING:
    from oobleck.adapters.base import Adapter
    from oobleck.example import Prediction
    from oobleck.module import Module
    from oobleck.predict import Predict

__all__ = ["StreamChunk", "astream", "stream"]


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """New text of one output field, as it was decoded.

    Attributes:
        predictor: the predictor's name in the program (as in ``named_predictors()``;
            ``"self"`` for a bare Predict).
        field: the output field's name.
        text: the text added to that field since its last chunk; with ``replace``, the
            field's whole text so far.
        replace: True when ``text`` replaces what was streamed of this field (a parse-repair
            retry, or the parsed answer, rewrote text already sent), rather than extending it.
            Applying each chunk (append, or replace) gives every field's final text.
    """

    predictor: str
    field: str
    text: str
    replace: bool = False


class StreamClosed(BaseException):  # noqa: N818 - a signal like GeneratorExit, not an error
    """Raised inside a streaming call when its consumer has stopped reading.

    A BaseException, so that no ``except Exception`` on the way (a backend's retry loop, a
    user's forward) mistakes it for a failure to retry or record; it ends the call and is
    swallowed by the stream.
    """


class _State:
    """One stream: where chunks go, the predictors' names, whether the consumer left."""

    def __init__(self, names: Mapping[int, str], put: Callable[[object], None]) -> None:
        self.names = names
        self._put = put
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def check_open(self) -> None:
        if self._closed.is_set():
            raise StreamClosed

    def send(self, chunk: StreamChunk) -> None:
        self.check_open()
        self._put(chunk)

    def close(self) -> None:
        self._closed.set()


class _Handoff:
    """A channel from the worker to a sync consumer, one chunk at a time.

    ``send`` returns once the consumer took the chunk, so the worker (and the backend's
    stream) never runs ahead of what was read: a consumer that stops early stops the call at
    the next chunk, and a slow one slows the reading of the stream rather than piling it up.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: collections.deque[object] = collections.deque()
        self._closed = False
        self._sent = 0
        self._taken = 0

    def send(self, item: object) -> None:
        with self._cond:
            if self._closed:
                raise StreamClosed
            self._items.append(item)
            self._sent += 1
            mine = self._sent
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._taken >= mine or self._closed)
            if self._taken < mine:
                raise StreamClosed

    def finish(self, item: object) -> None:
        """The last item (the result or the error): sent without waiting."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def get(self) -> object:
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._taken += 1
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


_ACTIVE: contextvars.ContextVar[_State | None] = contextvars.ContextVar("oobleck_stream", default=None)


class FieldEmitter:
    """One Predict call's part of a stream (used by :class:`~oobleck.predict.Predict`)."""

    def __init__(self, state: _State, predictor: Predict, adapter: Adapter, signature: Signature) -> None:
        self._state = state
        self._name = state.names.get(id(predictor), "?")
        self._partial = getattr(adapter, "partial_fields", None)
        self._signature = signature
        self._sent: dict[str, str] = {}
        self._last: str | None = None

    def check_open(self) -> None:
        """Raise StreamClosed if the consumer has left (checked before each LM call is reserved)."""
        self._state.check_open()

    @contextlib.contextmanager
    def sending(self, request: LMRequest) -> Iterator[None]:
        """Around one LM call: its text goes to the stream as the backend decodes it."""
        if self._partial is None or request.score is not None or request.n != 1:
            yield
            return
        pieces: list[str] = []

        def sink(text: str) -> None:
            self._state.check_open()
            pieces.append(text)
            self._send(self._partial(self._signature, "".join(pieces), final=False), final=False)  # type: ignore[misc]

        token = TEXT_SINK.set(sink)
        try:
            yield
        finally:
            TEXT_SINK.reset(token)

    def received(self, request: LMRequest, response: LMResponse) -> None:
        """Remember the text of the latest generated answer (what the prediction was read from)."""
        if request.score is None:
            self._last = response.text

    def finish(self, prediction: Prediction) -> None:
        """Send each output field's text that has not been sent yet, in signature order."""
        texts = {}
        if self._partial is not None and self._last is not None:  # the fields as read from the answer
            texts = self._partial(self._signature, self._last, final=True)
        outputs = self._signature.output_fields
        final = {
            name: texts[name] if name in texts else format_value(field.type, prediction[name])
            for name, field in outputs.items()
            if name in texts or name in prediction
        }
        self._send(final, final=True)

    def _send(self, fields: Mapping[str, str], *, final: bool) -> None:
        """Send what is new in each field: an extension, or (diverged text) a replacement.

        While an answer streams, text that is only shorter than what was sent (a retry's
        first pieces, or a partial read that will grow back) waits; the final texts always
        end up sent exactly.
        """
        for name, text in fields.items():
            sent = self._sent.get(name, "")
            if text == sent:
                continue
            if text.startswith(sent):
                self._sent[name] = text
                self._state.send(StreamChunk(self._name, name, text[len(sent) :]))
            elif final or not sent.startswith(text):
                self._sent[name] = text
                self._state.send(StreamChunk(self._name, name, text, replace=True))


def emitter(predictor: Predict, adapter: Adapter) -> FieldEmitter | None:
    """The emitter for one call of ``predictor``, or None when no stream is active."""
    state = _ACTIVE.get()
    if state is None:
        return None
    return FieldEmitter(state, predictor, adapter, predictor.signature)


@dataclass(frozen=True, slots=True)
class _Done:
    value: Any


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


def _names(program: Module) -> dict[int, str]:
    return {id(p): name for name, p in program.named_predictors()}


def stream(program: Module, inputs: Mapping[str, Any]) -> Iterator[StreamChunk | Prediction]:
    """Run ``program(**inputs)`` in a worker thread, yielding chunks, then its result.

    See :meth:`oobleck.module.Module.stream`.
    """
    channel = _Handoff()
    state = _State(_names(program), channel.send)

    def run() -> None:
        _ACTIVE.set(state)  # in the worker's own copy of the caller's context
        try:
            channel.finish(_Done(program(**inputs)))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            channel.finish(_Failed(exc))

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(run,), name="oobleck-stream", daemon=True)
    worker.start()
    try:
        while True:
            item = channel.get()
            if isinstance(item, _Done):
                yield item.value
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]  # a StreamChunk
    finally:
        state.close()
        channel.close()
        worker.join()


async def astream(program: Module, inputs: Mapping[str, Any]) -> AsyncIterator[StreamChunk | Prediction]:
    """Run ``await program.acall(**inputs)`` in a task, yielding chunks, then its result.

    See :meth:`oobleck.module.Module.astream`.
    """
    import asyncio  # only async callers pay for it

    loop = asyncio.get_running_loop()
    channel: asyncio.Queue[object] = asyncio.Queue()
    home = threading.get_ident()

    def put(item: object) -> None:
        # Backends that run in worker threads (BaseLM.acomplete, a sync forward) send from there.
        if threading.get_ident() == home:
            channel.put_nowait(item)
        else:
            loop.call_soon_threadsafe(channel.put_nowait, item)

    state = _State(_names(program), put)

    async def run() -> None:
        try:
            put(_Done(await program.acall(**inputs)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failed(exc))

    token = _ACTIVE.set(state)
    try:
        task = asyncio.ensure_future(run())  # the task's context is a copy of this one
    finally:
        _ACTIVE.reset(token)
    try:
        while True:
            item = await channel.get()
            if isinstance(item, _Done):
                yield item.value
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]  # a StreamChunk
    finally:
        state.close()
        if not task.done():
            task.cancel()
        await asyncio.wait({task})
