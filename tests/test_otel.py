"""OpenTelemetry spans: names, parent links and GenAI attributes, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from oobleck import Example, FakeLM, LMResponseError, Module, OpenAILM, Predict, context, otel  # noqa: E402
from oobleck.metrics import exact_match  # noqa: E402
from oobleck.optimize import RandomSearch  # noqa: E402

SECRET_QUESTIONS = [f"secret question {i}" for i in range(10)]
PROVIDERS: list[TracerProvider] = []  # the provider of the running test (for an outer span)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.configure(tracer_provider=provider)
    PROVIDERS.append(provider)
    try:
        yield exporter
    finally:
        PROVIDERS.remove(provider)
        otel.configure(tracer_provider=None, capture_content=False, enabled=True)
        provider.shutdown()


def parents(found: tuple[ReadableSpan, ...], span: ReadableSpan) -> list[str]:
    by_id = {s.context.span_id: s for s in found}
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def data() -> list[Example]:
    return [Example(q=q, a="x" if i % 2 else "y").with_inputs("q") for i, q in enumerate(SECRET_QUESTIONS)]


def test_a_compile_is_one_tree_optimizer_candidate_trial_module_lm(spans: InMemorySpanExporter) -> None:
    lm = FakeLM(lambda request: {"a": "x"})
    rows = data()
    RandomSearch(exact_match, num_candidates=1, max_bootstrapped_demos=1, num_threads=2).compile(
        Predict("q -> a", lm=lm, temperature=0.0, max_tokens=20), trainset=rows[:4], valset=rows[4:], progress=False
    )
    found = spans.get_finished_spans()
    assert len({s.context.trace_id for s in found}) == 1
    chats = [s for s in found if s.name == "chat fake"]
    assert len(chats) == len(lm.requests) > 0
    scored = [s for s in chats if any(p.startswith("candidate ") for p in parents(found, s))]
    assert scored
    chain = parents(found, scored[0])
    assert chain[0] == "module Predict" and chain[1] == "trial" and chain[-1] == "compile RandomSearch"
    assert chain[2].startswith("candidate ") and len(chain) == 4

    chat = scored[0]
    attrs = dict(chat.attributes or {})
    assert chat.kind == SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "fake"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "fake"
    assert attrs["gen_ai.request.temperature"] == 0.0 and attrs["gen_ai.request.max_tokens"] == 20
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["oobleck.cached"] is False and attrs["gen_ai.response.finish_reasons"] == ("stop",)

    compile_span = next(s for s in found if s.name == "compile RandomSearch")
    c = dict(compile_span.attributes or {})
    assert (c["oobleck.optimizer.name"], c["oobleck.trainset.size"], c["oobleck.valset.size"]) == ("RandomSearch", 4, 6)
    candidate = next(
        s for s in found if s.name.startswith("candidate ") and s.attributes.get("oobleck.candidate.rows") == "all"
    )
    assert 0.0 <= candidate.attributes["oobleck.candidate.score"] <= 100.0
    trials = [s for s in found if s.name == "trial"]
    assert all("oobleck.trial.score" in s.attributes for s in trials)
    module = next(s for s in found if s.name == "module Predict")
    assert module.attributes["oobleck.signature"] == "q -> a" and module.attributes["oobleck.usage.calls"] == 1

    # no prompt, completion, input or output text unless asked for
    everything = json.dumps([dict(s.attributes or {}) for s in found], default=str)
    assert not any(q in everything for q in SECRET_QUESTIONS)


def test_a_program_call_inside_an_outer_span_is_its_child(spans: InMemorySpanExporter) -> None:
    class Box(Module):
        def __init__(self) -> None:
            self.answer = Predict("q -> a")

        def forward(self, q: str):
            return self.answer(q=q)

    with PROVIDERS[-1].get_tracer("server").start_as_current_span("POST /") as request:
        with context(lm=FakeLM([{"a": "4"}])):
            Box()(q="2+2?")
    found = spans.get_finished_spans()
    by_name = {s.name: s for s in found}
    assert set(by_name) == {"POST /", "module Box", "module Predict", "format chat", "chat fake", "parse chat"}
    outer = request.get_span_context()
    assert by_name["module Box"].parent.span_id == outer.span_id
    assert {s.context.trace_id for s in found} == {outer.trace_id}
    for name in ("format chat", "chat fake", "parse chat"):
        assert by_name[name].parent.span_id == by_name["module Predict"].context.span_id
    assert parents(found, by_name["chat fake"]) == ["module Predict", "module Box", "POST /"]


def test_content_only_when_asked(spans: InMemorySpanExporter) -> None:
    otel.configure(capture_content=True)
    Predict("q -> a", lm=FakeLM([{"a": "four"}]))(q="secret question")
    by_name = {s.name: dict(s.attributes or {}) for s in spans.get_finished_spans()}
    sent = json.loads(by_name["chat fake"]["gen_ai.input.messages"])
    assert sent[-1]["role"] == "user" and "secret question" in sent[-1]["parts"][0]["content"]
    assert "four" in by_name["chat fake"]["gen_ai.output.messages"]
    assert json.loads(by_name["module Predict"]["oobleck.inputs"]) == {"q": "secret question"}
    assert json.loads(by_name["module Predict"]["oobleck.outputs"]) == {"a": "four"}


def test_a_failed_call_is_an_error_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(LMResponseError):
        Predict("q -> a", lm=FakeLM([]))(q="x")
    for span in spans.get_finished_spans():
        if span.name in ("chat fake", "module Predict"):
            assert span.status.status_code == StatusCode.ERROR
            assert span.attributes["error.type"] == "LMResponseError"


def test_switched_off_makes_no_spans(spans: InMemorySpanExporter) -> None:
    otel.configure(enabled=False)
    Predict("q -> a", lm=FakeLM([{"a": "4"}]))(q="x")
    assert spans.get_finished_spans() == ()
    otel.configure(enabled=True)
    Predict("q -> a", lm=FakeLM([{"a": "4"}]))(q="x")
    assert len(spans.get_finished_spans()) == 4


def test_keys_and_credentials_never_reach_a_span(spans: InMemorySpanExporter) -> None:
    openai = pytest.importorskip("openai")
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx  # type: ignore[no-redef]

    reply = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"a": "4"}'}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    key = "sk-test-abcdef0123456789"
    client = openai.OpenAI(
        api_key=key,
        base_url="http://user:hunter2@127.0.0.1:8123/v1?token=qs-secret",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=reply))),
    )
    out = Predict("q -> a", lm=OpenAILM("m", client=client))(q="x")
    assert out.a == "4"
    chat = next(s for s in spans.get_finished_spans() if s.name == "chat m")
    attrs = dict(chat.attributes or {})
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", 8123)
    assert attrs["gen_ai.provider.name"] == "openai" and attrs["gen_ai.response.model"] == "m-2024"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (12, 3)
    everything = json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()], default=str)
    for secret in (key, "hunter2", "qs-secret"):
        assert secret not in everything


def test_import_oobleck_and_a_call_never_import_opentelemetry() -> None:
    code = (
        "import sys, oobleck\n"
        "oobleck.Predict('q -> a', lm=oobleck.FakeLM([{'a': '4'}]))(q='x')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_global_provider_is_used_once_set_with_no_oobleck_setting() -> None:
    code = (
        "import oobleck\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "qa = oobleck.Predict('q -> a', lm=oobleck.FakeLM([{'a': '4'}], cycle=True))\n"
        "qa(q='before any provider')\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "qa(q='after')\n"
        "print(sorted(s.name for s in exporter.get_finished_spans()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sorted(["module Predict", "format chat", "chat fake", "parse chat"]))
