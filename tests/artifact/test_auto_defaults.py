"""Defaults that depend on the LM are saved as "auto" and resolved against the LM in use.

A program saved without an LM, loaded and called on a backend of any capability kind, sends
the same requests and answers the same as one saved with that LM, and as the program itself
never saved. What was named (adapter, mode, calibration) stays named.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest

import oobleck
from oobleck import FakeLM, Predict
from oobleck.adapters import NO_LM_REASON, PLAIN_REASON, ChatAdapter, JSONAdapter, TemplateAdapter
from oobleck.artifact import load, loads, save
from oobleck.lm.base import Capabilities
from oobleck.lm.types import LMRequest

TEXTS = ("a fine film", "dull", "not bad at all")


class Sentiment(oobleck.Signature):
    """Classify the sentiment."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def _scores(request: LMRequest) -> dict[str, float]:
    texts = (request.score,) if isinstance(request.score, str) else tuple(request.score or ())
    # deterministic, depends on the prompt and the label, so a different prompt gives different answers
    prompt = "".join(m.content for m in request.messages)
    return {t: -0.1 * ((sum(map(ord, prompt + t)) % 9) + 1) for t in texts}


KINDS = {
    "plain chat": lambda: FakeLM([{"label": "negative"}], cycle=True),
    "json schema": lambda: FakeLM([{"label": "negative"}], cycle=True, capabilities=Capabilities(json_schema=True)),
    "scoring": lambda: FakeLM([{"label": "negative"}], cycle=True, scores=_scores),
    "like LocalLM": lambda: FakeLM(
        [{"label": "negative"}],
        cycle=True,
        scores=_scores,
        capabilities=Capabilities(json_schema=True, logprobs=True, n=True, scoring=True),
    ),
}


def _program(**kwargs) -> Predict:
    return Predict(Sentiment, demos=[{"text": "great", "label": "positive"}], **kwargs)


def _run(predictor: Predict, lm: FakeLM) -> tuple[list, list]:
    predictor.lm = lm
    answers = [predictor(text=t) for t in TEXTS]
    return [(a.label, a.probabilities) for a in answers], [r.key_data() for r in lm.requests]


def _saved(tmp_path, program: Predict, name: str) -> dict:
    save(program, tmp_path / name)
    return json.loads((tmp_path / name).read_text())


@pytest.mark.parametrize("kind", list(KINDS))
def test_saved_without_an_lm_behaves_as_saved_with_that_lm(tmp_path, kind):
    doc = _saved(tmp_path, _program(), "no-lm.json")
    assert doc["predictors"][0]["adapter"]["auto"] is True
    _saved(tmp_path, _program(lm=KINDS[kind]()), "with-lm.json")

    without_lm = _run(load(tmp_path / "no-lm.json").predictors["self"], KINDS[kind]())
    with_lm = _run(load(tmp_path / "with-lm.json").predictors["self"], KINDS[kind]())
    never_saved = _run(_program(), KINDS[kind]())
    assert without_lm == with_lm == never_saved
    labels, requests = without_lm
    assert {label for label, _ in labels} <= {"positive", "negative"}
    scored = any(r["score"] for r in requests)
    assert scored == KINDS[kind]().capabilities.scoring  # labels are ranked wherever the backend can


def test_the_loaded_program_chooses_per_call_like_the_program_itself(tmp_path):
    save(_program(), tmp_path / "p.json")
    loaded = load(tmp_path / "p.json").predictors["self"]
    for make in KINDS.values():
        lm = make()
        assert loaded.adapter_choice(lm) == _program().adapter_choice(lm)
        assert loaded.mode_choice(lm) == _program().mode_choice(lm)
    # through the context and through load(lm=) as well
    with oobleck.context(lm=KINDS["json schema"]()):
        assert isinstance(loaded.resolve_adapter(), TemplateAdapter)
    again = load(tmp_path / "p.json", lm=KINDS["scoring"]()).predictors["self"]
    assert again.mode_choice()[0] == "score"


def test_reattached_onto_a_program_the_default_stays_auto(tmp_path):
    save(_program(), tmp_path / "p.json")
    mine = _program(adapter=ChatAdapter())  # whatever the target had is replaced by what was saved
    load(tmp_path / "p.json", program=mine)
    assert mine.adapter is None and mine.mode_choice(KINDS["scoring"]())[0] == "score"


@pytest.mark.parametrize("adapter", [ChatAdapter(), JSONAdapter(), TemplateAdapter(output="json")])
def test_a_named_adapter_stays_named_on_every_backend(tmp_path, adapter):
    doc = _saved(tmp_path, _program(adapter=adapter), "p.json")
    assert "auto" not in doc["predictors"][0]["adapter"]
    loaded = load(tmp_path / "p.json").predictors["self"]
    for make in KINDS.values():
        assert loaded.resolve_adapter(make()).name == adapter.name
        assert loaded.mode_choice(make())[0] == "generate"  # a named format generates (as before saving)
    assert loaded.adapter_choice()[1] == "named on the predictor"


def test_an_adapter_named_in_the_context_is_saved_as_named(tmp_path):
    with oobleck.context(adapter=JSONAdapter()):
        doc = _saved(tmp_path, _program(), "p.json")
    assert doc["predictors"][0]["adapter"]["name"] == "json" and "auto" not in doc["predictors"][0]["adapter"]
    assert isinstance(load(tmp_path / "p.json").predictors["self"].resolve_adapter(FakeLM()), JSONAdapter)


def test_a_named_mode_and_calibration_stay_named(tmp_path):
    scoring = KINDS["scoring"]
    doc = _saved(tmp_path, _program(mode="generate"), "gen.json")
    assert doc["predictors"][0]["extra"] == {"mode": "generate"}
    loaded = load(tmp_path / "gen.json").predictors["self"]
    labels, requests = _run(loaded, scoring())
    assert loaded.mode == "generate" and not any(r["score"] for r in requests)

    doc = _saved(tmp_path, _program(calibration=None), "raw.json")
    assert doc["predictors"][0]["extra"] == {"calibration": None}
    loaded = load(tmp_path / "raw.json").predictors["self"]
    assert loaded.calibration is None and loaded.mode == "auto"
    assert _run(loaded, scoring()) == _run(_program(calibration=None), scoring())
    assert len(loaded.lm.requests) == len(TEXTS)  # no content-free calls: calibration stays off

    doc = _saved(tmp_path, _program(mode="score", score_norm="mean"), "score.json")
    assert doc["predictors"][0]["extra"] == {"mode": "score", "score_norm": "mean"}
    loaded = load(tmp_path / "score.json").predictors["self"]
    assert loaded.mode == "score" and loaded.score_norm == "mean" and loaded.adapter is None


def test_the_prior_estimated_before_saving_is_kept_for_the_auto_mode(tmp_path):
    program = _program(lm=KINDS["scoring"]())
    before = [program(text=t) for t in TEXTS]
    doc = _saved(tmp_path, program, "p.json")
    assert set(doc["predictors"][0]["extra"]) == {"calibration_state"}
    loaded = load(tmp_path / "p.json", lm=KINDS["scoring"]()).predictors["self"]
    after = [loaded(text=t) for t in TEXTS]
    assert [(a.label, a.probabilities) for a in after] == [(b.label, b.probabilities) for b in before]
    assert all(a.usage.calls == 1 for a in after)  # the saved prior is used: nothing estimated again
    # on a backend that cannot score, the same file generates
    assert loaded.mode_choice(KINDS["plain chat"]())[0] == "generate"


def test_inspect_and_the_artifact_say_auto(tmp_path, capsys):
    from oobleck.cli import main

    save(_program(), tmp_path / "p.json")
    art = load(tmp_path / "p.json")
    assert art.adapter_reasons["self"].startswith("auto: no adapter was named")
    assert main(["inspect", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "adapter    auto (for the LM in use; chat v1 without one)" in out and "auto: no adapter" in out


# ---------------------------------------------------------------- artifacts written before "auto"


def _old_style(doc: dict, reason: str) -> str:
    """The same artifact as an oobleck before this change wrote it: no "auto", a concrete reason."""
    record = doc["predictors"][0]["adapter"]
    record.pop("auto", None)
    record["reason"] = reason
    return json.dumps(doc)


def test_an_old_artifact_saved_without_an_lm_now_follows_the_lm(tmp_path):
    doc = _saved(tmp_path, _program(), "p.json")
    assert doc["predictors"][0]["adapter"]["reason"] == NO_LM_REASON
    # its recorded reason promised "follows the LM's capabilities once one is": it now does
    assert loads(_old_style(doc, NO_LM_REASON)).predictors["self"].adapter is None
    for kind, make in KINDS.items():
        old = loads(_old_style(doc, NO_LM_REASON)).predictors["self"]
        assert _run(old, make()) == _run(_program(), make()), kind


def test_an_old_artifact_saved_with_an_lm_keeps_its_adapter(tmp_path):
    doc = _saved(tmp_path, _program(lm=KINDS["plain chat"]()), "p.json")
    old = loads(_old_style(doc, PLAIN_REASON)).predictors["self"]
    assert isinstance(old.adapter, ChatAdapter) and old.adapter_choice()[1] == PLAIN_REASON
    assert old.mode_choice(KINDS["scoring"]())[0] == "generate"  # as it loaded before: the adapter is fixed


def test_an_old_scored_artifact_keeps_loading_as_scored(tmp_path):
    program = _program(lm=KINDS["scoring"]())
    before = [program(text=t) for t in TEXTS]
    doc = _saved(tmp_path, program, "p.json")
    # what the old saver wrote for an "auto" predictor that scored: mode resolved, adapter fixed
    extra = doc["predictors"][0]["extra"]
    doc["predictors"][0]["extra"] = {"mode": "score", "calibration": "contextual", **extra}
    adapter_reason = doc["predictors"][0]["adapter"]["reason"]
    old = loads(_old_style(doc, adapter_reason), lm=KINDS["scoring"]()).predictors["self"]
    assert old.mode == "score" and isinstance(old.adapter, TemplateAdapter)
    after = [old(text=t) for t in TEXTS]
    assert [(a.label, a.probabilities) for a in after] == [(b.label, b.probabilities) for b in before]


def test_export_renders_an_auto_adapter_for_the_lm_in_use(tmp_path):
    from oobleck.artifact import export_messages

    save(_program(), tmp_path / "p.json")
    structured = KINDS["json schema"]()
    with_lm = export_messages(load(tmp_path / "p.json", lm=structured), text="ok")
    assert with_lm == [m.model_dump() for m in _program(lm=structured).render(text="ok")]
    without_lm = export_messages(load(tmp_path / "p.json"), text="ok")
    assert without_lm == [m.model_dump() for m in _program().render(text="ok")] != with_lm
