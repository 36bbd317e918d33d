"""With no adapter named, the format follows the backend's capabilities, and says why."""

from __future__ import annotations

import json
from typing import Literal

from oobleck import (
    Cache,
    CachedLM,
    Capabilities,
    ChatAdapter,
    FakeLM,
    InputField,
    JSONAdapter,
    OutputField,
    Predict,
    Signature,
    TemplateAdapter,
    context,
)
from oobleck.adapters import default_adapter
from oobleck.artifact import load, save


class Topic(Signature):
    """Classify the topic of the news article."""

    text: str = InputField()
    label: Literal["World", "Sports", "Business", "Sci/Tech"] = OutputField()


STRUCTURED = Capabilities(json_schema=True)


def test_structured_backend_gets_a_constrained_json_answer():
    lm = FakeLM([{"label": "Sports"}], capabilities=STRUCTURED)
    program = Predict(Topic, lm=lm)
    assert program(text="The match ended 2-1.").label == "Sports"
    request = lm.requests[0]
    assert request.response_format is not None  # the backend constrains the answer
    assert request.response_format["schema"]["properties"]["label"]["enum"] == [
        "World",
        "Sports",
        "Business",
        "Sci/Tech",
    ]
    assert request.messages[-1].content == "Text: The match ended 2-1."
    adapter, why = program.adapter_choice()
    assert isinstance(adapter, TemplateAdapter) and "json_schema" in why


def test_plain_backend_keeps_the_chat_format():
    lm = FakeLM([{"label": "World"}])
    program = Predict(Topic, lm=lm)
    assert program(text="Elections held.").label == "World"
    assert lm.requests[0].response_format is None
    assert "[[ ## text ## ]]" in lm.requests[0].messages[-1].content
    adapter, why = program.adapter_choice()
    assert isinstance(adapter, ChatAdapter) and "without structured output" in why


def test_a_cache_in_front_passes_the_capabilities_through():
    lm = CachedLM(FakeLM([{"label": "World"}], capabilities=STRUCTURED), cache=Cache(None))
    assert isinstance(Predict(Topic, lm=lm).resolve_adapter(), TemplateAdapter)


def test_a_named_adapter_wins_and_says_so():
    lm = FakeLM([{"label": "World"}], capabilities=STRUCTURED)
    assert Predict(Topic, lm=lm, adapter=ChatAdapter()).adapter_choice()[1] == "named on the predictor"
    with context(adapter=JSONAdapter()):
        adapter, why = Predict(Topic, lm=lm).adapter_choice()
    assert isinstance(adapter, JSONAdapter) and why == "named in oobleck.context"


def test_the_context_lm_decides_when_the_predictor_has_none():
    program = Predict(Topic)
    assert isinstance(program.resolve_adapter(), ChatAdapter)  # no LM anywhere yet
    with context(lm=FakeLM(capabilities=STRUCTURED)):
        assert isinstance(program.resolve_adapter(), TemplateAdapter)
        calls = program.render_calls(text="x")
    assert calls[0].adapter == "template" and "json_schema" in calls[0].adapter_reason


def test_default_adapter_function():
    assert isinstance(default_adapter(STRUCTURED)[0], TemplateAdapter)
    assert isinstance(default_adapter(Capabilities())[0], ChatAdapter)
    assert isinstance(default_adapter(None)[0], ChatAdapter)


def test_artifact_records_the_choice_and_keeps_it(tmp_path):
    program = Predict(Topic, lm=FakeLM(capabilities=STRUCTURED))
    save(program, tmp_path / "topic.json")
    record = json.loads((tmp_path / "topic.json").read_text())["predictors"][0]["adapter"]
    assert record["name"] == "template" and "json_schema" in record["reason"]
    art = load(tmp_path / "topic.json")
    assert art.adapter_reasons["self"] == record["reason"]
    # The loaded program keeps the format it was compiled with, on any backend.
    loaded = art.predictors["self"]
    assert isinstance(loaded.resolve_adapter(FakeLM()), TemplateAdapter)
    assert loaded.adapter_choice()[1] == record["reason"]
    loaded.adapter = ChatAdapter()
    assert loaded.adapter_choice()[1] == "named on the predictor"
