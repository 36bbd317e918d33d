"""`oobleck.asgi_app` through the ASGI test client: contract, typed OpenAPI, batch, token, mounting."""

from __future__ import annotations

import datetime
import json
import threading
from typing import Literal

import pydantic
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from qa_program import TwoStep
from starlette.applications import Starlette
from starlette.routing import Mount

from oobleck import (
    ConfigError,
    FakeLM,
    InputField,
    Module,
    OutputField,
    Predict,
    Prediction,
    Signature,
    asgi_app,
    context,
)
from oobleck.artifact import load
from oobleck.errors import LMTimeoutError
from oobleck.lm.base import BaseLM
from oobleck.lm.types import Choice, LMRequest, LMResponse, Usage
from oobleck.modules.best_of_n import BestOfN
from oobleck.modules.rag import RAG
from oobleck.modules.refine import Refine
from oobleck.retrieve import Passage

TOKEN = "s3cret-token-for-tests"


def answer_lm(request):
    question = request.messages[-1].content.split("\n")[1]
    if "timeout" in question:
        raise LMTimeoutError("the model took too long")
    if "garbled" in question:
        return "[[ ## something_else ## ]]\nno answer marker"
    return f"[[ ## reasoning ## ]]\nbecause\n\n[[ ## answer ## ]]\nanswer to {question}\n\n[[ ## ok ## ]]\ntrue"


@pytest.fixture
def qa(tmp_path) -> TestClient:
    Predict("question -> answer", demos=[{"question": "q", "answer": "a"}]).save(tmp_path / "qa.json")
    with context(lm=FakeLM(answer_lm)):  # the app carries this context into every request
        app = asgi_app(tmp_path / "qa.json")
    return TestClient(app)


def test_health_and_description(qa):
    got = qa.get("/health")
    assert got.status_code == 200 and got.json()["status"] == "ok" and got.json()["predictors"] == ["self"]
    body = qa.get("/").json()
    assert body["inputs"] == ["question"] and body["predictors"]["self"]["outputs"] == ["answer"]


def test_post_inputs_returns_outputs_and_usage(qa):
    got = qa.post("/", json={"question": "2+2?"})
    assert got.status_code == 200 and got.json() == {"answer": "answer to 2+2?"}
    assert json.loads(got.headers["X-Oobleck-Usage"])["calls"] == 1
    assert qa.post("/predictors/self", json={"question": "q"}).json() == {"answer": "answer to q"}


@pytest.mark.parametrize(
    ("kwargs", "status", "kind"),
    [
        ({"content": b"{not json"}, 400, "InvalidJSON"),
        ({"json": ["a", "list"]}, 400, "BadRequest"),
        ({"content": b""}, 400, "BadRequest"),
        ({"json": {"wrong": "x"}}, 422, "InputError"),
        ({"json": {"question": "q", "extra": 1}}, 422, "InputError"),
        ({"json": {"question": 3}}, 422, "InputError"),  # the signature says str
        ({"json": {"question": "timeout please"}}, 504, "LMTimeoutError"),
        ({"json": {"question": "garbled"}}, 502, "ParseError"),
    ],
)
def test_bad_requests_get_json_errors(qa, kwargs, status, kind):
    got = qa.post("/", **kwargs)
    assert got.status_code == status and got.json()["error"]["type"] == kind and got.json()["error"]["message"]
    assert got.headers["content-type"].startswith("application/json")


def test_unknown_paths_methods_lengths_and_sizes(qa):
    assert qa.get("/nope").status_code == 404 and qa.get("/nope").json()["error"]["type"] == "NotFound"
    got = qa.post("/predictors/nope", json={"question": "q"})
    assert got.status_code == 404 and "nope" in got.json()["error"]["message"]
    got = qa.put("/", json={"question": "q"})
    assert got.status_code == 405 and got.json()["error"]["type"] == "MethodNotAllowed"
    got = qa.post("/", content=b"x" * (1024 * 1024 + 1))
    assert got.status_code == 413 and got.json()["error"]["type"] == "PayloadTooLarge"
    # a body without a length (chunked) is read up to the same limit
    got = qa.post("/", content=iter([b'{"question": ', b'"chunked"}']))
    assert got.status_code == 200 and got.json() == {"answer": "answer to chunked"}


def test_user_program_serves_its_predictors(tmp_path):
    TwoStep().save(tmp_path / "two.json")
    client = TestClient(asgi_app(load(tmp_path / "two.json", lm=FakeLM(answer_lm))))
    got = client.post("/", json={"question": "q"})
    assert got.status_code == 404 and got.json()["error"]["type"] == "NotRunnable"
    assert "/predictors/" in got.json()["error"]["message"]
    got = client.post("/predictors/check", json={"question": "q", "answer": "a"})
    assert got.status_code == 200 and got.json() == {"ok": True}
    got = client.post("/predictors/generate_answer.predict", json={"question": "q"})
    assert got.json() == {"reasoning": "because", "answer": "answer to q"}


def test_a_module_in_memory_is_served_whole():
    app = asgi_app(TwoStep(), lm=FakeLM(answer_lm))
    got = TestClient(app).post("/", json={"question": "q"})  # several predictors: any object goes in
    assert got.status_code == 200 and got.json() == {"reasoning": "because", "answer": "answer to q"}


@pytest.mark.parametrize("path", ["/", "/batch", "/stream"])
def test_inputs_a_program_does_not_take_are_a_422_not_a_500(path):
    client = TestClient(asgi_app(TwoStep(), lm=FakeLM(answer_lm)))
    for wrong in ({"questionx": "q"}, {}, {"question": "q", "extra": 1}):
        got = client.post(path, json=[wrong] if path == "/batch" else wrong)
        error = got.json()[0] if path == "/batch" else {"status": got.status_code, **got.json()}
        assert error["status"] == 422 and error["error"]["type"] == "InputError", (wrong, got.text)
        assert "question" in error["error"]["message"]


class Rewords(Module):
    """One predictor, called on inputs of the program's own naming."""

    def __init__(self):
        self.answer = Predict("question -> answer")

    def forward(self, text):
        return self.answer(question=text)


class ListRetriever:
    def search(self, queries, *, k):
        return [[Passage(id="p1", text="Paris is the capital of France.")] for _ in queries]

    def config(self):
        return {}


def test_a_one_predictor_program_takes_its_own_inputs_not_its_predictors():
    client = TestClient(asgi_app(Rewords(), lm=FakeLM(answer_lm)))
    assert client.get("/").json()["inputs"] == ["text"]
    got = client.post("/", json={"text": "hi"})
    assert got.status_code == 200 and got.json() == {"answer": "answer to hi"}
    got = client.post("/", json={"question": "hi"})
    assert got.status_code == 422 and "text" in got.json()["error"]["message"]
    assert client.post("/predictors/answer", json={"question": "hi"}).json() == {"answer": "answer to hi"}


class Passes(Module):
    def __init__(self):
        self.answer = Predict("context, question -> answer")

    def forward(self, question, context):
        return self.answer(context=context, question=question)


def test_a_program_whose_forward_names_its_predictors_inputs_keeps_the_typed_schema():
    client = TestClient(asgi_app(Passes(), lm=FakeLM(answer_lm)))
    assert client.get("/").json()["inputs"] == ["context", "question"]
    body = client.get("/openapi.json").json()["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/AnswerInputs"}
    got = client.post("/", json={"question": "q", "context": "c", "extra": 1})
    assert got.status_code == 422 and "extra" in got.json()["error"]["message"]


def test_a_rag_program_is_served_on_its_question_alone():
    rag = RAG(ListRetriever(), k=1, lm=FakeLM([{"answer": "Paris"}] * 3))
    client = TestClient(asgi_app(rag))
    assert client.get("/").json()["inputs"] == ["question"]
    got = client.post("/", json={"question": "the capital of France?"})
    assert got.status_code == 200 and got.json()["answer"] == "Paris", got.text
    assert got.json()["passages"][0]["text"] == "Paris is the capital of France."
    got = client.post("/", json={"question": "q", "context": "my own"})
    assert got.status_code == 422 and got.json()["error"]["type"] == "InputError"


class Delegates(Module):
    """A wrapper of its own: ``forward(**inputs)`` hands everything to the module it holds."""

    def __init__(self, inner):
        self.inner = inner

    def forward(self, **inputs):
        return self.inner(**inputs)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda rag: BestOfN(rag, 2, lambda inputs, pred: 1.0, threshold=1.0),
        lambda rag: Refine(rag, 2, lambda inputs, pred: 1.0, threshold=1.0),
        lambda rag: Delegates(BestOfN(rag, 2, lambda inputs, pred: 1.0, threshold=1.0)),
    ],
    ids=["BestOfN", "Refine", "own-wrapper"],
)
def test_a_wrapped_rag_program_is_served_on_its_question_alone(wrap):
    lm = FakeLM([{"answer": "Paris"}], cycle=True)
    client = TestClient(asgi_app(wrap(RAG(ListRetriever(), k=1)), lm=lm))
    assert client.get("/").json()["inputs"] == ["question"]
    got = client.post("/", json={"question": "the capital of France?"})
    assert got.status_code == 200 and got.json()["answer"] == "Paris", got.text
    assert got.json()["passages"][0]["text"] == "Paris is the capital of France."
    calls = len(lm.requests)
    for bad in ({"question": "q", "context": "my own"}, {"query": "q"}):
        got = client.post("/", json=bad)
        assert got.status_code == 422 and got.json()["error"]["type"] == "InputError", got.text
        assert "question" in got.json()["error"]["message"]
    assert len(lm.requests) == calls  # refused before any attempt ran


class OddOutputs(Module):
    """Returns values the json module cannot write as they are."""

    def __init__(self):
        self.p = Predict("question -> answer")

    def forward(self, question):
        out = self.p(question=question)
        return Prediction(answer=out.answer, when=datetime.date(2026, 1, 2), seen={3}, ratio=float("nan"))


def test_outputs_json_cannot_write_as_they_are_still_get_a_json_answer():
    client = TestClient(asgi_app(OddOutputs(), lm=FakeLM(answer_lm)))
    expected = {"answer": "answer to q", "when": "2026-01-02", "seen": [3], "ratio": None}
    got = client.post("/", json={"question": "q"})
    assert got.status_code == 200 and json.loads(got.text) == expected  # strict JSON: no NaN
    got = client.post("/batch", json=[{"question": "q"}])
    assert got.status_code == 200 and got.json()[0]["outputs"] == expected
    got = client.post("/stream", json={"question": "q"})
    last = got.text.strip().split("\n\n")[-1]
    assert last.startswith("event: prediction") and json.loads(last.split("data: ", 1)[1])["outputs"] == expected


def test_lm_given_to_the_app_is_the_apps_own_not_the_callers_programs(tmp_path):
    def says(word):
        return FakeLM(lambda request: {"answer": word})

    program = Predict("question -> answer", lm=says("mine"))
    first = TestClient(asgi_app(program, lm=says("first")))
    second = TestClient(asgi_app(program, lm=says("second")))
    assert program(question="q").answer == "mine"  # the caller's program is left as it was
    assert first.post("/", json={"question": "q"}).json() == {"answer": "first"}
    assert second.post("/", json={"question": "q"}).json() == {"answer": "second"}
    program.save(tmp_path / "qa.json")
    art = load(tmp_path / "qa.json", lm=says("loaded"))
    served = TestClient(asgi_app(art, lm=says("served")))
    assert served.post("/", json={"question": "q"}).json() == {"answer": "served"}
    assert art(question="q").answer == "loaded"


def test_no_lm_is_a_server_error(tmp_path):
    Predict("question -> answer").save(tmp_path / "qa.json")
    got = TestClient(asgi_app(tmp_path / "qa.json")).post("/", json={"question": "q"})
    assert got.status_code == 500 and got.json()["error"]["type"] == "ConfigError"


# ---------------------------------------------------------------- typed OpenAPI


class Answer(pydantic.BaseModel):
    text: str
    confidence: float


class Topic(Signature):
    """Classify the article."""

    text: str = InputField(desc="the article")
    max_words: int = InputField()
    strict: bool = InputField()
    label: Literal["World", "Sports"] = OutputField(desc="the topic")
    tags: list[str] = OutputField()
    score: float = OutputField()
    detail: Answer = OutputField()


def test_openapi_schema_comes_from_the_signature_field_by_field():
    schema = TestClient(asgi_app(Predict(Topic), max_batch=7)).get("/openapi.json").json()
    components = schema["components"]["schemas"]
    inputs = components["SelfInputs"]
    assert inputs["required"] == ["text", "max_words", "strict"] and inputs["additionalProperties"] is False
    assert inputs["properties"]["text"] == {"type": "string", "title": "Text", "description": "the article"}
    assert inputs["properties"]["max_words"]["type"] == "integer"
    assert inputs["properties"]["strict"]["type"] == "boolean"
    outputs = components["SelfOutputs"]
    assert outputs["required"] == ["label", "tags", "score", "detail"]
    assert outputs["properties"]["label"]["enum"] == ["World", "Sports"]
    assert outputs["properties"]["label"]["description"] == "the topic"
    assert outputs["properties"]["tags"] == {"type": "array", "items": {"type": "string"}, "title": "Tags"}
    assert outputs["properties"]["score"]["type"] == "number"
    assert outputs["properties"]["detail"] == {"$ref": "#/components/schemas/Answer", "title": "Detail"}
    assert components["Answer"]["properties"]["confidence"]["type"] == "number"

    post = schema["paths"]["/"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SelfInputs"}
    assert post["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SelfOutputs"
    }
    assert post["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    batch = schema["paths"]["/predictors/self/batch"]["post"]
    body = batch["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"type": "array", "items": {"$ref": "#/components/schemas/SelfInputs"}, "maxItems": 7}
    item = components["SelfBatchItem"]["properties"]
    assert {"$ref": "#/components/schemas/SelfOutputs"} in item["outputs"]["anyOf"]
    assert "securitySchemes" not in schema["components"]


def test_each_predictor_has_its_own_typed_path(tmp_path):
    TwoStep().save(tmp_path / "two.json")
    schema = TestClient(asgi_app(tmp_path / "two.json")).get("/openapi.json").json()
    check = schema["paths"]["/predictors/check"]["post"]
    ref = check["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    outputs = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert outputs["properties"]["ok"]["type"] == "boolean"
    assert set(schema["paths"]) >= {"/predictors/generate_answer.predict", "/predictors/check", "/", "/batch"}


def test_docs_page_is_served(qa):
    got = qa.get("/docs")
    assert got.status_code == 200 and "swagger" in got.text.lower() and "/openapi.json" in got.text


# ---------------------------------------------------------------- batch


def test_batch_answers_each_input_on_its_own(qa):
    got = qa.post("/batch", json=[{"question": "a"}, {"question": "garbled"}, {"nope": 1}, "text", {"question": "b"}])
    assert got.status_code == 200
    items = got.json()
    assert [i["status"] for i in items] == [200, 502, 422, 400, 200]
    assert items[0]["outputs"] == {"answer": "answer to a"} and items[0]["usage"]["calls"] == 1
    assert items[4]["outputs"] == {"answer": "answer to b"}
    assert items[1]["error"]["type"] == "ParseError" and items[2]["error"]["type"] == "InputError"
    assert qa.post("/predictors/self/batch", json=[{"question": "c"}]).json()[0]["outputs"] == {"answer": "answer to c"}


def test_batch_is_bounded_and_must_be_a_list(tmp_path):
    client = TestClient(asgi_app(Predict("question -> answer"), lm=FakeLM(answer_lm), max_batch=3))
    got = client.post("/batch", json=[{"question": "q"}] * 4)
    assert got.status_code == 413 and got.json()["error"]["type"] == "BatchTooLarge"
    got = client.post("/batch", json={"question": "q"})
    assert got.status_code == 400 and "list" in got.json()["error"]["message"]
    assert client.post("/batch", json=[]).json() == []


# ---------------------------------------------------------------- limits and token


def test_in_flight_programs_are_bounded_and_overflow_gets_503():
    release = threading.Event()
    active = peak = 0
    lock = threading.Lock()

    class Blocking(BaseLM):
        def complete(self, request: LMRequest) -> LMResponse:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            release.wait(10)
            with lock:
                active -= 1
            return LMResponse(choices=(Choice(text="[[ ## answer ## ]]\nok"),), usage=Usage(calls=1))

    client = TestClient(asgi_app(Predict("question -> answer"), lm=Blocking(), max_concurrency=2, queue_timeout=0.3))
    threading.Timer(1.5, release.set).start()
    got = client.post("/batch", json=[{"question": f"q{i}"} for i in range(6)])
    statuses = sorted(i["status"] for i in got.json())
    assert peak == 2 and statuses == [200, 200, 503, 503, 503, 503]
    release.clear()
    threading.Timer(1.0, release.set).start()
    with client:  # one event loop for the three requests
        results: list[object] = []
        threads = [
            threading.Thread(target=lambda: results.append(client.post("/", json={"question": "q"}))) for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    busy = [r for r in results if r.status_code == 503]  # type: ignore[attr-defined]
    assert len(busy) == 1 and busy[0].headers["Retry-After"] == "1" and busy[0].json()["error"]["type"] == "Busy"


def test_bearer_token_guards_everything_but_health():
    client = TestClient(asgi_app(Predict("question -> answer"), lm=FakeLM(answer_lm), token=TOKEN))
    got = client.post("/", json={"question": "q"})
    assert got.status_code == 401 and got.json()["error"]["type"] == "Unauthorized"
    assert "Bearer" in got.headers["WWW-Authenticate"]
    assert client.post("/", json={"question": "q"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for path in ("/", "/openapi.json", "/docs", "/nope"):
        assert client.get(path).status_code == 401, path
    assert client.get("/health").json()["status"] == "ok"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/", json={"question": "q"}, headers=auth).json() == {"answer": "answer to q"}
    schema = client.get("/openapi.json", headers=auth).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schema["paths"]["/health"]["get"]["security"] == []


@pytest.mark.parametrize("token", [TOKEN + "\n", " " + TOKEN, "tab\there", "two\nlines"])
def test_a_token_no_client_can_send_is_refused(token):
    """A token read from a file keeps its newline; HTTP strips it from the header: every request would be a 401."""
    with pytest.raises(ConfigError, match="token"):
        asgi_app(Predict("question -> answer"), lm=FakeLM(answer_lm), token=token)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_concurrency": 0},
        {"queue_timeout": float("nan")},
        {"max_body_bytes": -1},
        {"body_timeout": float("inf")},
        {"max_batch": 0},
        {"token": "  "},
    ],
)
def test_settings_that_are_not_finite_positive_numbers_are_refused(bad):
    with pytest.raises(ConfigError):
        asgi_app(Predict("question -> answer"), **bad)


def test_a_program_without_fastapi_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # what a missing package looks like to import
    with pytest.raises(ConfigError, match=r"oobleck\[serve\]"):
        asgi_app(Predict("question -> answer"))


# ---------------------------------------------------------------- mounted in a host service


@pytest.mark.parametrize("host", ["fastapi", "starlette"])
def test_mounted_inside_a_host_app(host):
    app = asgi_app(Predict("question -> answer"), lm=FakeLM(answer_lm), token=TOKEN)
    if host == "fastapi":
        outer = FastAPI()

        @outer.get("/ping")
        def ping() -> dict[str, str]:
            return {"pong": "yes"}

        outer.mount("/qa", app)
    else:
        outer = Starlette(routes=[Mount("/qa", app=app)])
    client = TestClient(outer)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/qa/health").json()["status"] == "ok"  # health is open under the prefix too
    assert client.post("/qa/", json={"question": "q"}).status_code == 401
    assert client.post("/qa/", json={"question": "m"}, headers=auth).json() == {"answer": "answer to m"}
    got = client.post("/qa/predictors/self/batch", json=[{"question": "n"}], headers=auth)
    assert got.json()[0]["outputs"] == {"answer": "answer to n"}
    if host == "fastapi":
        assert client.get("/ping").json() == {"pong": "yes"}


def test_middleware_a_user_adds_sees_the_program_requests_too():
    # The program endpoints skip the middleware stack only while the app has none but its own.
    from starlette.middleware.base import BaseHTTPMiddleware

    app = asgi_app(Predict("question -> answer"), lm=FakeLM(answer_lm), token=TOKEN)
    seen: list[str] = []

    async def tag(request, call_next):
        seen.append(f"{request.method} {request.url.path}")
        response = await call_next(request)
        response.headers["X-Seen-By"] = "user middleware"
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=tag)
    client = TestClient(app)
    got = client.post("/", json={"question": "q"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert got.json() == {"answer": "answer to q"} and got.headers["X-Seen-By"] == "user middleware"
    assert client.post("/", json={"question": "q"}).status_code == 401  # the guard still applies
    assert seen == ["POST /", "POST /"]


def test_field_names_that_are_pydantic_attributes_are_served_as_named():
    # "json", "schema" and "copy" are BaseModel attributes: the models alias them.
    lm = FakeLM(["[[ ## copy ## ]]\ndone"], cycle=True)
    client = TestClient(asgi_app(Predict("json, schema -> copy"), lm=lm))
    assert client.post("/", json={"json": "a", "schema": "b"}).json() == {"copy": "done"}
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert list(schema["SelfInputs"]["properties"]) == ["json", "schema"]
    assert list(schema["SelfOutputs"]["properties"]) == ["copy"]
    assert "unexpected input 'field_0'" in client.post("/", json={"field_0": "a"}).json()["error"]["message"]


class WithStyle(Module):
    def __init__(self):
        self.answer = Predict("question -> answer")

    def forward(self, question, style="short"):
        return self.answer(question=f"{question} ({style})")


def test_a_wrapper_keeps_the_optional_inputs_of_the_module_it_delegates_to():
    client = TestClient(asgi_app(Delegates(WithStyle()), lm=FakeLM([{"answer": "ok"}], cycle=True)))
    assert client.get("/").json()["inputs"] == ["question", "style"]
    assert client.post("/", json={"question": "q"}).status_code == 200
    assert client.post("/", json={"question": "q", "style": "long"}).status_code == 200
    got = client.post("/", json={"style": "long"})
    assert got.status_code == 422 and got.json()["error"]["type"] == "InputError", got.text
