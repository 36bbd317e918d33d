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


def test_artifact_records_the_default_as_auto_and_resolves_it_per_lm(tmp_path):
    program = Predict(Topic, lm=FakeLM(capabilities=STRUCTURED))
    save(program, tmp_path / "topic.json")
    record = json.loads((tmp_path / "topic.json").read_text())["predictors"][0]["adapter"]
    # the template was rendered with the default for the LM it was saved with; the choice is "auto"
    assert record["name"] == "template" and "json_schema" in record["reason"] and record["auto"] is True
    art = load(tmp_path / "topic.json")
    assert art.adapter_reasons["self"].startswith("auto: ") and "'template'" in art.adapter_reasons["self"]
    # The loaded program chooses as the program did: for the LM it is called with.
    loaded = art.predictors["self"]
    assert loaded.adapter is None
    assert isinstance(loaded.resolve_adapter(FakeLM()), ChatAdapter)
    assert isinstance(loaded.resolve_adapter(FakeLM(capabilities=STRUCTURED)), TemplateAdapter)
    assert loaded.adapter_choice(FakeLM(capabilities=STRUCTURED))[1] == program.adapter_choice()[1]
    loaded.adapter = ChatAdapter()
    assert loaded.adapter_choice()[1] == "named on the predictor"


def test_a_named_adapter_is_saved_and_loaded_as_named(tmp_path):
    save(Predict(Topic, adapter=JSONAdapter()), tmp_path / "named.json")
    record = json.loads((tmp_path / "named.json").read_text())["predictors"][0]["adapter"]
    assert record["name"] == "json" and "auto" not in record
    loaded = load(tmp_path / "named.json").predictors["self"]
    assert isinstance(loaded.resolve_adapter(FakeLM()), JSONAdapter)
    assert isinstance(loaded.resolve_adapter(FakeLM(capabilities=STRUCTURED)), JSONAdapter)
    assert loaded.adapter_choice()[1] == "named on the predictor"
