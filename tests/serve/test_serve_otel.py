"""A served request is one OpenTelemetry tree: the HTTP SERVER span, then the program's spans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from oobleck import FakeLM, Predict, asgi_app, context, otel  # noqa: E402
from oobleck.errors import LMTimeoutError  # noqa: E402


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.configure(tracer_provider=provider)
    try:
        yield exporter
    finally:
        otel.configure(tracer_provider=None, capture_content=False, enabled=True)
        provider.shutdown()


def answer(request):
    if "slow" in request.messages[-1].content:
        raise LMTimeoutError("the model took too long")
    return {"a": "4"}


@pytest.fixture
def client() -> TestClient:
    with context(lm=FakeLM(answer)):
        return TestClient(asgi_app(Predict("q -> a")))


def ancestors(found: tuple[ReadableSpan, ...], span: ReadableSpan) -> list[str]:
    by_id = {s.context.span_id: s for s in found}
    names = []
    while span.parent is not None:
        assert span.parent.span_id in by_id, f"{span.name}'s parent was not exported"
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def test_a_served_request_is_the_root_of_the_programs_spans(spans, client):
    got = client.post("/", json={"q": "2+2?"})
    assert got.status_code == 200 and got.json()["a"] == "4"
    found = spans.get_finished_spans()
    server = [s for s in found if s.kind == SpanKind.SERVER]
    assert [s.name for s in server] == ["POST /"]
    root = server[0]
    assert root.parent is None
    assert root.attributes["http.request.method"] == "POST" and root.attributes["http.route"] == "/"
    assert root.attributes["http.response.status_code"] == 200
    chat = next(s for s in found if s.name == "chat fake")
    assert ancestors(found, chat) == ["module Predict", "POST /"]
    assert len({s.context.trace_id for s in found}) == 1


def test_a_predictor_route_and_a_failed_request_are_named_and_marked(spans, client):
    assert client.post("/predictors/self", json={"q": "slow"}).status_code == 504
    found = spans.get_finished_spans()
    root = next(s for s in found if s.kind == SpanKind.SERVER)
    assert root.name == "POST /predictors/self"
    assert root.attributes["http.response.status_code"] == 504
    assert root.status.status_code == StatusCode.ERROR
    chat = next(s for s in found if s.name == "chat fake")
    assert ancestors(found, chat)[-1] == "POST /predictors/self"


def test_no_spans_when_telemetry_is_off(spans, client):
    otel.configure(enabled=False)
    assert client.post("/", json={"q": "2+2?"}).status_code == 200
    assert spans.get_finished_spans() == ()


def test_a_path_the_app_does_not_serve_does_not_name_the_span(spans, client):
    """The span name and http.route stay a small set whatever paths clients send (semantic conventions)."""
    for path in ("/predictors/x-8f2b1c", "/predictors/self/../../etc", "/wp-login.php", "/a-random-9d1e/x"):
        assert client.post(path, json={"q": "1"}).status_code == 404
    server = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in server] == ["POST"] * 4
    assert all("http.route" not in s.attributes and s.attributes["http.response.status_code"] == 404 for s in server)


def test_a_mounted_app_names_its_spans_by_its_own_routes(spans):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    with context(lm=FakeLM(answer)):
        host = Starlette(routes=[Mount("/qa", app=asgi_app(Predict("q -> a")))])
    assert TestClient(host).post("/qa/predictors/self", json={"q": "1"}).status_code == 200
    root = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert root.name == "POST /predictors/self" and root.attributes["http.route"] == "/predictors/self"
