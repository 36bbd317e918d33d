"""Prompt formats: each renders what is sent, parses its own answers, and records its options."""

from __future__ import annotations

import pytest

from oobleck import FakeLM, Predict, Signature
from oobleck.adapters.template import FORMATS, TemplateAdapter, format_adapter, format_name
from oobleck.errors import ConfigError, ParseError
from oobleck.lm.base import Capabilities

SIG = Signature("text -> label: Literal['positive', 'negative']", instructions="Classify the review.")
DEMO = {"text": "Great fun.", "label": "positive"}


def test_the_one_line_hand_prompt() -> None:
    msgs = format_adapter("one_line").render(SIG, demos=[], inputs={"text": "Dull."})
    assert [(m.role, m.content) for m in msgs] == [("system", "Classify the review."), ("user", "Text: Dull.")]
    opts = format_adapter("one_line").request_options(SIG, Capabilities(json_schema=True))
    assert opts["response_format"]["schema"]["properties"]["label"]["enum"] == ["positive", "negative"]
    assert format_adapter("one_line").request_options(SIG, Capabilities(json_schema=False)) == {}


def test_placements_of_instruction_schema_and_demos() -> None:
    prefix = format_adapter("prefix").render(SIG, demos=[DEMO], inputs={"text": "Dull."})
    assert "Input fields:" in prefix[0].content and "Label: ..." in prefix[0].content
    assert [m.role for m in prefix] == ["system", "user", "assistant", "user"]
    assert prefix[2].content == "Label: positive"

    user_turn = format_adapter("user_turn").render(SIG, demos=[], inputs={"text": "Dull."})
    assert [m.role for m in user_turn] == ["user"] and user_turn[0].content == "Classify the review.\n\nText: Dull."

    keys = format_adapter("keys_hint").render(SIG, demos=[], inputs={"text": "Dull."})
    assert (
        keys[0].content == 'Classify the review.\n\nAnswer with a JSON object: {"label": <one of: positive, negative>}'
    )
    brief = TemplateAdapter(output="prefix", schema="keys").render(
        Signature("q -> answer, n: int"), demos=[], inputs={"q": "?"}
    )
    assert brief[0].content.endswith("Answer as: Answer: <text>, N: <an integer>")

    inline = format_adapter("inline_demos").render(SIG, demos=[DEMO], inputs={"text": "Dull."})
    assert [m.role for m in inline] == ["system", "user"]
    assert 'Examples:\n\nText: Great fun.\n{"label": "positive"}' in inline[0].content


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_round_trips_through_a_fake_lm(name: str) -> None:
    adapter = format_adapter(name)
    lm = FakeLM([{"label": "negative"}], cycle=True)
    p = Predict(SIG, lm=lm, adapter=adapter, demos=[DEMO])
    assert p(text="Dull.").label == "negative"
    # what render shows is exactly what was sent
    assert list(lm.requests[-1].messages) == p.render(text="Dull.")
    assert format_name(adapter) == name


def test_lenient_parsing() -> None:
    a = TemplateAdapter(output="prefix")
    assert a.parse(SIG, "Label: negative") == {"label": "negative"}
    assert a.parse(SIG, "label:positive\n") == {"label": "positive"}
    assert a.parse(SIG, '{"label": "positive"}') == {"label": "positive"}
    assert a.parse(SIG, "It is negative.") == {"label": "negative"}
    two = Signature("q -> answer, confidence: float")
    assert a.parse(two, "Answer: Paris\nConfidence: 0.9") == {"answer": "Paris", "confidence": 0.9}
    with pytest.raises(ParseError):
        a.parse(two, "Answer: Paris")
    with pytest.raises(ParseError):
        a.parse(SIG, "no idea")


def test_a_prefix_answer_starting_with_a_byte_order_mark_is_read() -> None:
    # the BOM is not whitespace, so the first "Name:" line was not found
    two = Signature("q -> answer, confidence: float")
    a = TemplateAdapter(output="prefix")
    assert a.parse(two, "\ufeffAnswer: Paris\r\nConfidence: 0.9\r\n") == {"answer": "Paris", "confidence": 0.9}


def test_options_are_checked_and_named() -> None:
    with pytest.raises(ConfigError):
        TemplateAdapter(output="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TemplateAdapter(instructions="user", demos="inline")
    with pytest.raises(ConfigError, match="schema must be"):
        TemplateAdapter(schema="full")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown format"):
        format_adapter("fancy")
    odd = TemplateAdapter(output="prefix", schema=False)
    assert format_name(odd).startswith("template{")
    assert TemplateAdapter(**odd.options()) == odd


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_artifacts_record_the_format_and_render_it_exactly(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from oobleck.artifact import load

    p = Predict(SIG, adapter=format_adapter(name), demos=[DEMO])
    p.save(tmp_path / "a.json")
    art = load(tmp_path / "a.json")
    loaded = art.predictors["self"]
    assert format_name(loaded.resolve_adapter()) == name
    assert loaded.render(text="Dull.") == p.render(text="Dull.")


def test_an_edited_artifact_with_bad_format_options_is_an_artifact_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from oobleck.artifact import load
    from oobleck.errors import ArtifactError

    Predict(SIG, adapter=format_adapter("prefix")).save(tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())
    data["predictors"][0]["adapter"]["options"]["output"] = "xml"
    (tmp_path / "b.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="bad options"):
        load(tmp_path / "b.json")
