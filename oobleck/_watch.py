"""The watched forms of the calls Predict makes: an LM call, an adapter's render and parse.

Each sends its start and end events to the callbacks in force (:mod:`oobleck.callbacks`); an
LM call is also remembered in :mod:`oobleck.history`. Sync and async LM calls share the rest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from oobleck import callbacks
from oobleck.adapters.base import Adapter
from oobleck.example import Example
from oobleck.history import record
from oobleck.lm.base import LM
from oobleck.lm.types import LMRequest, LMResponse, Message
from oobleck.signature import Signature

__all__ = ["acomplete", "complete", "parse", "render"]


def complete(lm: LM, request: LMRequest) -> LMResponse:
    """``lm.complete(request)``, watched and remembered."""
    with callbacks.step("lm", None, lm, {"request": request}) as watched:
        started = time.perf_counter()
        try:
            response = lm.complete(request)
        except Exception as exc:
            record(lm, request, None, exc, time.perf_counter() - started)
            raise
        record(lm, request, response, None, time.perf_counter() - started)
        watched.done(response)
    return response


async def acomplete(lm: LM, request: LMRequest) -> LMResponse:
    """``await lm.acomplete(request)``, watched and remembered."""
    with callbacks.step("lm", None, lm, {"request": request}) as watched:
        started = time.perf_counter()
        try:
            response = await lm.acomplete(request)
        except Exception as exc:
            record(lm, request, None, exc, time.perf_counter() - started)
            raise
        record(lm, request, response, None, time.perf_counter() - started)
        watched.done(response)
    return response


def render(
    adapter: Adapter, signature: Signature, demos: Sequence[Example], inputs: Mapping[str, Any]
) -> list[Message]:
    """``adapter.render(...)``, watched."""
    with callbacks.step("format", None, adapter, {"signature": signature, "demos": demos, "inputs": inputs}) as watched:
        messages = adapter.render(signature, demos=demos, inputs=inputs)
        watched.done(messages)
    return messages


def parse(adapter: Adapter, signature: Signature, text: str) -> dict[str, Any]:
    """``adapter.parse(signature, text)``, watched."""
    with callbacks.step("parse", None, adapter, {"signature": signature, "text": text}) as watched:
        values = adapter.parse(signature, text)
        watched.done(values)
    return values
