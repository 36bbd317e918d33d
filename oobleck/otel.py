"""OpenTelemetry spans for every step oobleck takes, following the GenAI semantic conventions.

Nothing to call: once your process has an OpenTelemetry tracer provider (``pip install
'oobleck[otel]'`` plus the SDK or a distro, and ``trace.set_tracer_provider(...)``, or
``opentelemetry-instrument``), each step a program or a compile takes becomes a span, nested
as the steps were, under whatever span is current (a server's request span, a job's):

- compile: ``compile {Optimizer}``; ``oobleck.optimizer.name``, ``oobleck.seed``,
  ``oobleck.trainset.size``, ``oobleck.valset.size``;
- candidate: ``candidate {key}``; ``oobleck.candidate.key``, ``oobleck.candidate.rows``, and on
  end ``oobleck.candidate.score`` (mean, percent), ``.rows_scored``, ``.errors``, ``.dropped``;
- trial (one row run and scored): ``trial``; on end ``oobleck.trial.score``, ``oobleck.trial.failed``;
- module: ``module {Class}``; ``oobleck.module.class``, ``oobleck.signature`` (a Predict), on end
  ``oobleck.usage.calls`` / ``.cache_hits`` / ``.prompt_tokens`` / ``.completion_tokens``;
- lm: ``chat {model}``, a CLIENT span; ``gen_ai.operation.name`` = chat,
  ``gen_ai.provider.name`` (and the older ``gen_ai.system``), ``gen_ai.request.model``,
  ``.temperature``, ``.max_tokens``, ``.top_p``, ``.seed``, ``.stop_sequences``,
  ``server.address`` / ``server.port``; on end ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens`` / ``output_tokens``, ``gen_ai.response.finish_reasons``,
  ``oobleck.cached``;
- format / parse: ``format {adapter}`` / ``parse {adapter}``; ``oobleck.adapter``;
- retrieval: ``retrieve {Retriever}``; ``oobleck.retrieval.k``, on end ``oobleck.retrieval.passages``;
- tool: ``execute_tool {name}``; ``gen_ai.operation.name`` = execute_tool, ``gen_ai.tool.name``,
  on end ``oobleck.tool.failed``.

A step that raised has status ERROR and ``error.type``; spans other than the LM call's are
INTERNAL. Spans never carry API keys (an LM's identity holds none, and an endpoint
is reduced to its host and port), and by default no prompt, completion, input or output text:
``configure(capture_content=True)``, or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``
(the convention's variable), adds ``gen_ai.input.messages`` / ``gen_ai.output.messages`` on LM
spans and ``oobleck.inputs`` / ``oobleck.outputs`` (JSON) on the others.

Cost: ``import oobleck`` never imports opentelemetry. Until some code has imported
``opentelemetry.trace`` and set a tracer provider, a step costs one dictionary look-up here
(``benchmarks/watching_overhead.py`` measures a call with and without).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from oobleck.callbacks import Event

__all__ = ["configure", "settings"]

_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_MAX_TEXT = 16_384  # a captured text attribute is cut here (backends reject huge attributes)

_LOCK = threading.Lock()
_enabled = os.environ.get("OOBLECK_OTEL", "on").lower() not in ("0", "off", "false", "no")
_capture: bool | None = None  # None: read the environment variable
_bridge: _Bridge | None = None
_bridge_provider: Any = None
_UNSET: Any = object()
_provider: Any = None  # None: the global tracer provider


def configure(
    *, enabled: bool | None = None, capture_content: bool | None = None, tracer_provider: Any = _UNSET
) -> None:
    """Turn oobleck's spans off or on, choose whether they carry text, or give them a provider.

    Args:
        enabled: False: no spans even when a tracer provider is set (the environment variable
            ``OOBLECK_OTEL=off`` does the same at start-up). None leaves it as is.
        capture_content: True adds the messages, completions, inputs and outputs to spans
            (they may hold personal data); False never does; None leaves it as is (by default
            it follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
        tracer_provider: the ``TracerProvider`` oobleck's spans go to, instead of the global
            one (as OpenTelemetry instrumentations take it); None goes back to the global one.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> configure(tracer_provider=TracerProvider(), capture_content=False)
        >>> configure(tracer_provider=None)
    """
    global _enabled, _capture, _provider
    with _LOCK:
        if tracer_provider is not _UNSET:
            _provider = tracer_provider
        if enabled is not None:
            _enabled = bool(enabled)
        if capture_content is not None:
            _capture = bool(capture_content)


def settings() -> dict[str, bool]:
    """Whether spans are on and whether they carry text."""
    return {"enabled": _enabled, "capture_content": _capturing()}


_ENV_CAPTURE = os.environ.get(_CONTENT_ENV, "").lower() in ("1", "true", "yes")


def _capturing() -> bool:
    return _ENV_CAPTURE if _capture is None else _capture


def bridge() -> _Bridge | None:
    """The callback that turns events into spans, or None when no tracer provider is set."""
    global _bridge, _bridge_provider
    if not _enabled:
        return None
    trace = _trace_api()
    provider = _provider if _provider is not None else _global_provider(trace)
    if provider is None:
        return None
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    if provider is not _bridge_provider:
        from oobleck._version import __version__

        with _LOCK:
            _bridge = _Bridge(provider.get_tracer("oobleck", __version__))
            _bridge_provider = provider
    return _bridge


@functools.cache
def _trace_api() -> Any:
    """``opentelemetry.trace``, imported once (only ever called once some code imported it)."""
    from opentelemetry import trace

    return trace


# Whether the environment names a provider for the API to load (read once, as the API's own
# environment settings are read at start-up).
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _global_provider(trace: Any) -> Any:
    """The global tracer provider, or None when none is set.

    ``trace.get_tracer_provider()`` looks the environment up on every call (a few µs, and a
    program makes several steps per call): while no provider is set and the environment names
    none, the API's module attribute says so at the cost of an attribute read.
    """
    provider = getattr(trace, "_TRACER_PROVIDER", _UNSET)
    if provider is None and not _PROVIDER_FROM_ENV:
        return None
    return trace.get_tracer_provider()


class _Bridge:
    """A callback that opens a span at each start event and ends it at the matching end."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        self._open: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "oobleck.otel bridge"

    @property
    def tracer(self) -> Any:
        """The tracer the spans come from."""
        return self._tracer

    def on_start(self, event: Event) -> None:
        from opentelemetry import context, trace  # already imported: bridge() found them

        capture = _capturing()
        name, client, attributes = _describe(event, capture)
        span = self._tracer.start_span(
            name,
            kind=trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL,
            attributes=_clean(attributes),
        )
        token = context.attach(trace.set_span_in_context(span))
        with self._lock:
            self._open[event.id] = (span, token)

    def on_end(self, event: Event) -> None:
        from opentelemetry import context, trace

        with self._lock:
            opened = self._open.pop(event.id, None)
        if opened is None:
            return
        span, token = opened
        try:
            if span.is_recording():
                capture = _capturing()
                span.set_attributes(_clean(_ended(event, capture)))
                if event.error is not None:
                    span.set_attribute("error.type", type(event.error).__qualname__)
                    span.set_status(trace.Status(trace.StatusCode.ERROR, type(event.error).__name__))
                    if capture:
                        span.record_exception(event.error)
        finally:
            context.detach(token)
            span.end()


def http_server_span(method: str, route: str | None) -> Any:
    """A SERVER span for one HTTP request, to enter around it (None when spans are off).

    Named ``"{method} {route}"`` with the HTTP semantic conventions' ``http.request.method`` and
    ``http.route`` (just ``"{method}"``, without ``http.route``, when ``route`` is None: a path
    no route matched); while it is current, the program's spans (module, LM calls) are its
    children, so a served request is one tree. The caller sets ``http.response.status_code``.
    """
    found = bridge()
    if found is None:
        return None
    from opentelemetry import trace

    attributes = {"http.request.method": method}
    if route is not None:
        attributes["http.route"] = route
    return found.tracer.start_as_current_span(
        f"{method} {route}" if route is not None else method,
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
    )


# ---- what each kind of step says ----


def _describe(event: Event, capture: bool) -> tuple[str, bool, dict[str, Any]]:
    """The span's name, whether it is a client span, and its start attributes."""
    kind, inst, inputs = event.kind, event.instance, event.inputs
    attrs: dict[str, Any] = {"oobleck.step": kind}
    if kind == "lm":
        return f"chat {event.name}", True, {**attrs, **_lm_request(inst, inputs["request"], capture)}
    if kind == "module":
        attrs["oobleck.module.class"] = type(inst).__name__
        signature = getattr(inst, "signature", None)
        if signature is not None:
            attrs["oobleck.signature"] = str(signature)
        if capture:
            attrs["oobleck.inputs"] = _json(inputs)
        return f"module {event.name}", False, attrs
    if kind in ("format", "parse"):
        attrs["oobleck.adapter"] = event.name
        if capture and kind == "parse":
            attrs["oobleck.inputs"] = _text(str(inputs.get("text", "")))
        return f"{kind} {event.name}", False, attrs
    if kind == "retrieval":
        attrs["oobleck.retrieval.k"] = inputs.get("k")
        if capture:
            attrs["oobleck.retrieval.query"] = _text(str(inputs.get("query", "")))
        return f"retrieve {event.name}", False, attrs
    if kind == "tool":
        attrs.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": event.name})
        if capture:
            attrs["gen_ai.tool.call.arguments"] = _json(inputs.get("args"))
        return f"execute_tool {event.name}", False, attrs
    if kind == "optimizer":
        attrs.update(
            {
                "oobleck.optimizer.name": event.name,
                "oobleck.seed": inputs.get("seed"),
                "oobleck.trainset.size": inputs.get("trainset"),
                "oobleck.valset.size": inputs.get("valset"),
            }
        )
        return f"compile {event.name}", False, attrs
    if kind == "candidate":
        rows = inputs.get("rows")
        attrs.update(
            {"oobleck.candidate.key": event.name, "oobleck.candidate.rows": "all" if rows is None else len(rows)}
        )
        return f"candidate {event.name}", False, attrs
    if kind == "trial":
        attrs["oobleck.program.class"] = type(inst).__name__
        if capture:
            example: Any = inputs.get("example")
            attrs["oobleck.inputs"] = _json(example.inputs() if hasattr(example, "inputs") else example)
        return "trial", False, attrs
    return f"{kind} {event.name}", False, attrs


def _lm_request(lm: Any, request: Any, capture: bool) -> dict[str, Any]:
    identity: Mapping[str, str] = getattr(lm, "identity", None) or {}
    settings: Mapping[str, Any] = getattr(lm, "settings", None) or {}
    provider = identity.get("backend") or type(lm).__name__
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": identity.get("model") or provider,
        "gen_ai.request.temperature": _first(request.temperature, settings.get("temperature")),
        "gen_ai.request.max_tokens": _first(request.max_tokens, settings.get("max_tokens")),
        "gen_ai.request.top_p": _first(request.top_p, settings.get("top_p")),
        "gen_ai.request.seed": _first(request.seed, settings.get("seed")),
        "gen_ai.request.stop_sequences": list(request.stop) if request.stop else None,
        "gen_ai.request.choice.count": request.n if request.n > 1 else None,
        "oobleck.adapter": request.adapter,
        "oobleck.lm.scoring": request.score is not None,
    }
    endpoint = identity.get("endpoint")
    if endpoint:
        # Host and port only: a URL may carry user:password@ or a key in its query.
        parts = urlsplit(endpoint)
        attrs["server.address"] = parts.hostname
        try:
            attrs["server.port"] = parts.port
        except ValueError:
            pass
    if capture:
        attrs["gen_ai.input.messages"] = _json(
            [{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in request.messages]
        )
    return attrs


def _ended(event: Event, capture: bool) -> dict[str, Any]:
    """The attributes an end event adds (what the step produced)."""
    out, kind = event.outputs, event.kind
    if out is None:
        return {}
    if kind == "lm":
        usage = out.usage
        attrs: dict[str, Any] = {
            "gen_ai.response.model": out.model or None,
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
            "gen_ai.response.finish_reasons": [c.finish_reason or "unknown" for c in out.choices],
            "oobleck.cached": bool(out.cached or usage.cache_hits),
        }
        if capture:
            attrs["gen_ai.output.messages"] = _json(
                [{"role": "assistant", "parts": [{"type": "text", "content": c.text}]} for c in out.choices]
            )
        return attrs
    if kind == "module":
        usage = getattr(out, "usage", None)
        attrs = {}
        if usage is not None:
            attrs.update(
                {
                    "oobleck.usage.calls": usage.calls,
                    "oobleck.usage.cache_hits": usage.cache_hits,
                    "oobleck.usage.prompt_tokens": usage.prompt_tokens,
                    "oobleck.usage.completion_tokens": usage.completion_tokens,
                }
            )
        if capture:
            attrs["oobleck.outputs"] = _json(dict(out) if isinstance(out, Mapping) else out)
        return attrs
    if kind == "retrieval":
        return {"oobleck.retrieval.passages": len(out)}
    if kind == "tool":
        attrs = {"oobleck.tool.failed": out.error is not None}
        if capture:
            attrs["gen_ai.tool.call.result"] = _text(str(out.observation))
        return attrs
    if kind == "candidate":
        return {
            "oobleck.candidate.score": out.mean(),
            "oobleck.candidate.rows_scored": len(out.scores),
            "oobleck.candidate.errors": out.errors,
            "oobleck.candidate.dropped": out.dropped,
        }
    if kind == "trial":
        return {"oobleck.trial.score": out.score, "oobleck.trial.failed": out.error is not None}
    if kind == "optimizer":
        return {"oobleck.optimizer.predictors": len(out.named_predictors())}
    if kind == "parse" and capture:
        return {"oobleck.outputs": _json(out)}
    return {}


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Only the values OpenTelemetry takes: no None, sequences of one primitive type."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            out[key] = value
        elif isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out


def _text(value: str) -> str:
    return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"


def _json(value: Any) -> str:
    return _text(json.dumps(value, ensure_ascii=False, default=_default))


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)
