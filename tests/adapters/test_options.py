"""An adapter's identity: ``options()`` says everything that changes what is sent, and rebuilds it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from oobleck import FakeLM, Predict, Signature
from oobleck.adapters import Adapter, ChatAdapter, JSONAdapter, TemplateAdapter, adapter_from_name
from oobleck.adapters.base import DemoTurns
from oobleck.adapters.template import ADAPTERS, FORMATS, format_name
from oobleck.artifact import load
from oobleck.errors import ArtifactError, ConfigError
from oobleck.lm.base import Capabilities
from oobleck.optimize._search import candidate_key

SIG = Signature("text -> label: Literal['positive', 'negative']", instructions="Classify the review.")
DEMO = {"text": "Great fun.", "label": "positive"}


def _every_template() -> list[TemplateAdapter]:
    out = []
    for output, schema, instructions, demos in itertools.product(
        ("json", "prefix"), (False, True, "keys"), ("system", "user"), ("turns", "inline")
    ):
        if demos == "inline" and instructions == "user":
            continue  # refused by the constructor
        out.append(TemplateAdapter(output=output, schema=schema, instructions=instructions, demos=demos))  # type: ignore[arg-type]
    return out


KINDS: dict[str, Adapter] = {
    **{f"format {name}": adapter for name, adapter in FORMATS.items()},
    "json strict": JSONAdapter(strict=True),
    **{f"template {i}": a for i, a in enumerate(_every_template())},
}


def _sent(adapter: Adapter, capabilities: Capabilities) -> tuple[Any, ...]:
    """Everything the adapter decides about one request: messages and request options."""
    messages = adapter.render(SIG, demos=[DEMO], inputs={"text": "Dull."})
    return tuple(messages), json.dumps(adapter.request_options(SIG, capabilities), sort_keys=True, default=str)


def test_strict_json_has_its_own_options_because_it_sends_a_schema_everywhere() -> None:
    plain, strict = JSONAdapter(), JSONAdapter(strict=True)
    assert plain.options() == {} and strict.options() == {"strict": True}
    no_schema = Capabilities(json_schema=False)
    assert "response_format" not in plain.request_options(SIG, no_schema)
    assert "response_format" in strict.request_options(SIG, no_schema)
    assert format_name(plain) == "json" and format_name(strict) == 'json{"strict": true}'
    # the optimizers' candidate key reads options(): the two no longer share scores
    keys = {candidate_key(Predict(SIG, adapter=a)) for a in (plain, strict)}
    assert len(keys) == 2


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_options_rebuild_an_adapter_that_sends_the_same_requests(kind: str) -> None:
    adapter = KINDS[kind]
    options = adapter.options()
    assert json.loads(json.dumps(options)) == options  # JSON data, as artifacts save it
    rebuilt = adapter_from_name(adapter.name, options)
    assert type(rebuilt) is type(adapter) and rebuilt.options() == options
    assert format_name(rebuilt) == format_name(adapter)
    for caps in (Capabilities(json_schema=True), Capabilities(json_schema=False)):
        assert _sent(rebuilt, caps) == _sent(adapter, caps)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_artifact_keeps_the_options(kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    adapter = KINDS[kind]
    p = Predict(SIG, adapter=adapter, demos=[DEMO])
    p.save(tmp_path / "a.json")
    saved = json.loads((tmp_path / "a.json").read_text())["predictors"][0]["adapter"]
    assert (saved["name"], saved["options"]) == (adapter.name, adapter.options())
    loaded = load(tmp_path / "a.json").predictors["self"].resolve_adapter()
    assert type(loaded) is type(adapter) and loaded.options() == adapter.options()


def test_options_that_differ_mean_requests_that_differ() -> None:
    """No two adapters here share (class, options) unless they send the same requests."""
    caps = Capabilities(json_schema=True)
    by_identity: dict[str, Any] = {}
    for adapter in KINDS.values():
        identity = f"{adapter.name}{json.dumps(adapter.options(), sort_keys=True)}"
        by_identity.setdefault(identity, _sent(adapter, caps))
        assert by_identity[identity] == _sent(adapter, caps)


def test_one_name_table() -> None:
    # adapter names come from the format table: every class in FORMATS, under its own name
    assert list(ADAPTERS) == ["chat", "json", "template"]
    assert {type(a) for a in FORMATS.values()} == set(ADAPTERS.values())
    for name, cls in ADAPTERS.items():
        assert cls.name == name and isinstance(adapter_from_name(name), cls)
        if name in FORMATS:  # an adapter name that is also a format is that adapter on its defaults
            assert type(FORMATS[name]) is cls and FORMATS[name].options() == cls().options()


def test_unknown_names_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown adapter 'xml'; expected 'chat', 'json' or 'template'"):
        adapter_from_name("xml")
    with pytest.raises(ConfigError, match="adapter 'chat' cannot be built from the options"):
        adapter_from_name("chat", {"strict": True})
    with pytest.raises(ConfigError, match="output must be"):
        adapter_from_name("template", {"output": "xml"})


def test_an_adapter_without_settings_has_empty_options() -> None:
    class Plain(ChatAdapter):
        name = "plain"

    assert Plain().options() == {} and DemoTurns().options() == {}
    assert isinstance(Plain(), Adapter)


def _saved_with(tmp_path, adapter: Adapter, record: dict[str, Any]):  # type: ignore[no-untyped-def]
    """A file saved with ``adapter`` whose adapter record is replaced by ``record`` (as written)."""
    Predict(SIG, adapter=adapter).save(tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())
    data["predictors"][0]["adapter"].update(record)
    (tmp_path / "b.json").write_text(json.dumps(data))
    return tmp_path / "b.json"


def test_artifacts_saved_with_adapter_options_still_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _saved_with(tmp_path, JSONAdapter(), {"name": "json", "version": "1", "options": {"strict": True}})
    adapter = load(path).predictors["self"].resolve_adapter()
    assert isinstance(adapter, JSONAdapter) and adapter.strict
    options = {"output": "prefix", "schema": True, "instructions": "system", "demos": "turns"}
    path = _saved_with(tmp_path, FORMATS["prefix"], {"name": "template", "version": "1", "options": options})
    assert format_name(load(path).predictors["self"].resolve_adapter()) == "prefix"


def test_an_option_the_adapter_does_not_take_is_an_artifact_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _saved_with(tmp_path, ChatAdapter(), {"name": "chat", "version": "1", "options": {"strict": True}})
    with pytest.raises(ArtifactError, match="bad options for adapter 'chat'"):
        load(path)


def test_a_strict_json_predictor_sends_the_schema_to_a_backend_without_one() -> None:
    lm = FakeLM([{"label": "negative"}], capabilities=Capabilities(json_schema=False))
    assert Predict(SIG, lm=lm, adapter=JSONAdapter(strict=True))(text="Dull.").label == "negative"
    assert lm.requests[-1].response_format is not None
