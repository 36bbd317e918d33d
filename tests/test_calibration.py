"""Calibration: the math on hand-made distributions, fitting, artifacts, inspect, metrics."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scoring_lm import ScoringLM, first_input

import oobleck
from oobleck import Predict
from oobleck.artifact import load
from oobleck.calibration import CONTENT_FREE, Calibration, calibrate, calibrated, fit_calibration, mean_distribution
from oobleck.cli import main
from oobleck.errors import ArtifactError, ConfigError
from oobleck.metrics import brier_score, expected_calibration_error, log_loss


class Sentiment(oobleck.Signature):
    """Classify the sentiment."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def dist(pos: float, neg: float) -> list[float]:
    """The raw distribution the scorer's two log-probabilities give."""
    a, b = math.exp(pos), math.exp(neg)
    return [a / (a + b), b / (a + b)]


def by_hand(p: list[float], prior: list[float]) -> list[float]:
    ratios = [x / q for x, q in zip(p, prior)]
    return [r / sum(ratios) for r in ratios]


# The scorer leans to "positive" whatever it reads: strongly on content-free inputs.
TABLE = {
    "N/A": {"positive": -0.2, "negative": -1.8},
    "": {"positive": -0.5, "negative": -0.9},
    "[MASK]": {"positive": -0.1, "negative": -2.3},
    "ok": {"positive": -0.6, "negative": -0.8},
    "fine": {"positive": -0.3, "negative": -1.2},
    "bad": {"positive": -0.9, "negative": -0.5},
    "meh": {"positive": -0.4, "negative": -1.0},
}
CF_PRIOR = mean_distribution([dist(**{"pos": TABLE[s]["positive"], "neg": TABLE[s]["negative"]}) for s in CONTENT_FREE])


def raw(text: str) -> list[float]:
    return dist(TABLE[text]["positive"], TABLE[text]["negative"])


# ---------------------------------------------------------------- the math


def test_contextual_prior_is_the_mean_over_content_free_inputs_and_is_divided_out():
    assert CF_PRIOR == pytest.approx([(raw("N/A")[i] + raw("")[i] + raw("[MASK]")[i]) / 3 for i in range(2)], abs=1e-15)
    assert calibrated(raw("ok"), CF_PRIOR) == pytest.approx(by_hand(raw("ok"), CF_PRIOR), abs=1e-12)


def test_batch_calibration_is_log_p_minus_log_prior_renormalised():
    rows = ["ok", "fine", "bad", "meh"]
    prior = mean_distribution(raw(r) for r in rows)
    logs = [math.log(p) - math.log(q) for p, q in zip(raw("ok"), prior)]
    expected = [math.exp(v) / sum(math.exp(w) for w in logs) for v in logs]
    assert calibrated(raw("ok"), prior) == pytest.approx(expected, abs=1e-12)


probabilities = st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=2, max_size=8).map(
    lambda xs: [x / math.fsum(xs) for x in xs]
)


@given(probabilities)
def test_a_uniform_prior_changes_nothing(p):
    assert calibrated(p, [1 / len(p)] * len(p)) == pytest.approx(p, rel=1e-9, abs=1e-12)


@given(probabilities, st.data())
def test_calibrated_probabilities_sum_to_one(p, data):
    prior = data.draw(st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=len(p), max_size=len(p)))
    prior = [q / math.fsum(prior) for q in prior]
    out = calibrated(p, prior)
    assert math.fsum(out) == pytest.approx(1.0, abs=1e-12) and all(0 <= x <= 1 for x in out)


# ---------------------------------------------------------------- contextual, by default


def test_the_default_estimates_the_contextual_prior_on_the_first_call_and_counts_it():
    lm = ScoringLM(TABLE)
    p = Predict(Sentiment, lm=lm)
    with oobleck.trace() as t:
        first = p(text="ok")
    assert [first_input(r) for r in lm.requests] == ["N/A", "", "[MASK]", "ok"]
    assert lm.requests[-1].score == ("Label: positive", "Label: negative")  # the scoring default's format
    assert first.usage.calls == 4 and t.usage.calls == 4
    assert [e.outputs for e in t.entries] == [None, None, None, {"label": "negative"}]
    assert list(first.raw_probabilities["label"].values()) == pytest.approx(raw("ok"), abs=1e-12)
    assert list(first.probabilities["label"].values()) == pytest.approx(by_hand(raw("ok"), CF_PRIOR), abs=1e-12)
    assert max(raw("ok")) == raw("ok")[0]  # uncalibrated, it would have said positive
    second = p(text="ok")
    assert second.usage.calls == 1 and second.probabilities == first.probabilities
    # a copy (an optimizer's candidate) estimates its own; a changed prompt needs a new prior
    other = p.copy()
    other.signature = other.signature.with_instructions("Is the text positive or negative?")
    other(text="ok")
    assert len(lm.requests) == 5 + 4


def test_named_score_mode_is_raw_unless_a_calibration_is_named():
    lm = ScoringLM(TABLE)
    assert Predict(Sentiment, lm=lm, mode="score")(text="ok").label == "positive"
    pred = Predict(Sentiment, lm=lm, mode="score", calibration="contextual")(text="ok")
    assert pred.label == "negative"
    assert Predict(Sentiment, lm=lm, calibration=None)(text="ok").label == "positive"


def test_batch_calibration_must_be_fitted_first():
    with pytest.raises(ConfigError, match=r"oobleck\.calibrate\(program, rows\)"):
        Predict(Sentiment, lm=ScoringLM(TABLE), calibration="batch")(text="ok")


# ---------------------------------------------------------------- fitting


def test_calibrate_fits_the_batch_prior_on_a_copy():
    lm = ScoringLM(TABLE)
    program = Predict(Sentiment, lm=lm)
    rows = [oobleck.Example(text=t).with_inputs("text") for t in ("ok", "fine", "bad", "meh")]
    fitted = calibrate(program, rows)
    assert program.calibration_state is None and program.calibration == "auto"
    state = fitted.calibration_state
    assert state.method == "batch" and state.rows == 4 and state.content_free == ()
    prior = mean_distribution(raw(r) for r in ("ok", "fine", "bad", "meh"))
    assert list(state.priors["label"]) == pytest.approx(prior, abs=1e-15)
    assert len(lm.requests) == 4  # one uncalibrated call per row, nothing else
    pred = fitted(text="ok")
    assert len(lm.requests) == 5  # a fitted prior needs no content-free calls
    assert list(pred.probabilities["label"].values()) == pytest.approx(by_hand(raw("ok"), prior), abs=1e-12)


def test_fit_calibration_contextual_matches_the_lazy_estimate():
    lm = ScoringLM(TABLE)
    p = Predict(Sentiment, lm=lm)
    state = fit_calibration(p, method="contextual")
    assert state.method == "contextual" and state.content_free == CONTENT_FREE and state.rows == 3
    assert list(state.priors["label"]) == pytest.approx(CF_PRIOR, abs=1e-15)
    assert calibrate(p, method="contextual")(text="ok").probabilities == p(text="ok").probabilities


def test_calibrate_refuses_what_it_cannot_fit():
    with pytest.raises(ConfigError, match="no predictor that scores"):
        calibrate(Predict(Sentiment, lm=oobleck.FakeLM()), [{"text": "x"}])
    with pytest.raises(ConfigError, match="needs rows"):
        calibrate(Predict(Sentiment, lm=ScoringLM(TABLE)), [])


def test_batch_inputs_of_an_inner_predictor_come_from_running_the_program():
    class Verdict(oobleck.Signature):
        """Classify the summary."""

        summary: str = oobleck.InputField()
        label: Literal["positive", "negative"] = oobleck.OutputField()

    class Pipeline(oobleck.Module):
        def __init__(self, lm):
            self.summarize = Predict("text -> summary", lm=lm)
            self.classify = Predict(Verdict, lm=lm)

        def forward(self, text):
            return self.classify(summary=self.summarize(text=text).summary)

    lm = ScoringLM(TABLE, generate=lambda r: "[[ ## summary ## ]]\n" + r.messages[-1].content.split("\n")[1])
    fitted = calibrate(Pipeline(lm), [{"text": t} for t in ("ok", "bad")])
    prior = mean_distribution([raw("ok"), raw("bad")])
    assert list(fitted.classify.calibration_state.priors["label"]) == pytest.approx(prior, abs=1e-15)
    assert fitted.summarize.calibration_state is None


# ---------------------------------------------------------------- artifacts


def _saved(tmp_path, program) -> tuple[dict, object]:
    path = tmp_path / "p.json"
    program.save(path)
    return json.loads(path.read_text()), path


def test_a_loaded_calibrated_program_predicts_exactly_as_before(tmp_path):
    lm = ScoringLM(TABLE)
    program = calibrate(Predict(Sentiment, lm=lm), [{"text": t} for t in ("ok", "fine", "bad", "meh")])
    before = [program(text=t) for t in ("ok", "bad", "fine")]
    doc, path = _saved(tmp_path, program)
    extra = doc["predictors"][0]["extra"]
    # the mode stays "auto" (scores on a backend that scores), the calibration as named by calibrate()
    assert "mode" not in extra and extra["calibration"] == "batch"
    assert extra["calibration_state"]["outputs"]["label"]["labels"] == ["positive", "negative"]
    for loaded in (load(path, lm=lm).predictors["self"], Predict(Sentiment, lm=lm).load(path)):
        assert loaded.calibration_state == program.calibration_state
        after = [loaded(text=t) for t in ("ok", "bad", "fine")]
        assert [(a.label, a.probabilities, a.raw_probabilities) for a in after] == [
            (b.label, b.probabilities, b.raw_probabilities) for b in before
        ]


def test_the_default_mode_and_calibration_are_saved_as_auto_with_the_prior(tmp_path):
    lm = ScoringLM(TABLE)
    p = Predict(Sentiment, lm=lm)
    before = p(text="ok")
    doc, path = _saved(tmp_path, p)
    extra = doc["predictors"][0]["extra"]
    assert set(extra) == {"calibration_state"}  # mode and calibration: "auto", resolved when called
    # the prior estimated on the first call is saved with how it was fitted and for which prompt
    state = extra["calibration_state"]
    assert state["method"] == "contextual" and state["rows"] == 3 and state["prompt"] == p.prompt_fingerprint()
    loaded = load(path, lm=lm).predictors["self"]
    assert loaded.adapter is None and loaded.mode == "auto" and loaded.calibration == "auto"
    assert loaded.prompt_fingerprint() == p.prompt_fingerprint()
    fresh = ScoringLM(TABLE)
    after = loaded.copy()
    after.lm = fresh
    answer = after(text="ok")
    assert answer.label == before.label == "negative" and answer.probabilities == before.probabilities
    assert answer.usage.calls == 1  # the saved prior is used: no content-free calls after loading


def test_a_generating_predictor_saves_no_scoring_state(tmp_path):
    doc, _ = _saved(tmp_path, Predict(Sentiment, lm=oobleck.FakeLM()))
    assert "extra" not in doc["predictors"][0]


def _broken(tmp_path, change) -> str:
    program = calibrate(Predict(Sentiment, lm=ScoringLM(TABLE)), [{"text": "ok"}, {"text": "bad"}])
    doc, path = _saved(tmp_path, program)
    change(doc["predictors"][0]["extra"])
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError) as info:
        load(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e["calibration_state"]["outputs"]["label"].update(prior=[0.5, 0.4]), "summing to 1"),
        (lambda e: e["calibration_state"]["outputs"]["label"].update(prior=[1.5, -0.5]), "positive numbers"),
        (lambda e: e["calibration_state"]["outputs"]["label"].update(prior=[1.0]), "2 positive numbers"),
        (lambda e: e["calibration_state"]["outputs"]["label"].update(prior=["a", "b"]), "positive numbers"),
        (lambda e: e["calibration_state"]["outputs"]["label"].update(labels=["negative", "positive"]), "refit"),
        (lambda e: e["calibration_state"]["outputs"].update(tone={"labels": [], "prior": []}), "covers outputs"),
        (lambda e: e["calibration_state"].update(method="platt"), "method"),
        (lambda e: e["calibration_state"].update(rows=0), "rows"),
        (lambda e: e["calibration_state"].update(score_norm="mean"), "score_norm"),
        (lambda e: e["calibration_state"].update(code="__import__('os')"), "unknown keys"),
        (lambda e: e.update(calibration="contextual"), "fitted by 'batch'"),
        (lambda e: e.update(mode="score") or e.pop("calibration_state"), "without its fitted prior"),
        (lambda e: e.update(mode="generate"), "only for a predictor in mode 'score'"),
        (lambda e: e.update(calibration="platt"), "calibration must be"),
        (lambda e: e.update(score_norm="max"), "score_norm must be"),
        (lambda e: e.update(calibration_state=[0.5, 0.5]), "must be an object"),
    ],
)
def test_malformed_or_mismatched_calibration_is_refused(tmp_path, change, message):
    assert message in _broken(tmp_path, change)


def test_a_calibration_fitted_for_other_labels_does_not_load(tmp_path):
    class Other(oobleck.Signature):
        """Classify."""

        text: str = oobleck.InputField()
        label: Literal["positive", "neutral"] = oobleck.OutputField()

    state = Calibration.fit("batch", [{"label": [0.3, 0.7]}], labels={"label": ("positive", "negative")})
    with pytest.raises(ArtifactError, match="refit"):
        Calibration.from_data(state.to_data(), labels={"label": ("positive", "neutral")}, score_norm="sum")
    p = Predict(Other, mode="score")
    with pytest.raises(ArtifactError, match="refit"):
        p.load_extra({"mode": "score", "calibration": "batch", "calibration_state": state.to_data()}, None)


@pytest.mark.parametrize(
    "saved, labels",
    [((True, False), (1, 0)), ((1, 0), (True, False)), ((1.0, 2.0), (1, 2)), ((1, 0), (1.0, 0.0))],
)
def test_a_calibration_for_labels_equal_only_in_python_does_not_load(saved, labels):
    # [True, False] == [1, 0] in Python: a prior fitted for bool labels loaded onto Literal[1, 0]
    state = Calibration.fit("batch", [{"label": [0.3, 0.7]}], labels={"label": saved})
    data = json.loads(json.dumps(state.to_data()))
    with pytest.raises(ArtifactError, match="refit"):
        Calibration.from_data(data, labels={"label": labels}, score_norm="sum")


@pytest.mark.parametrize("method", ["contextual", "batch"])
def test_a_prior_without_its_prompt_is_not_divided_out_of_reordered_labels(method):
    # a prior saved without its prompt fingerprint (an older or edited artifact) was used
    # whatever the signature became: after Literal['positive', 'negative'] was reordered, the
    # prior's entries went to the other labels
    rows = [{"text": "ok"}, {"text": "bad"}]
    program = calibrate(Predict(Sentiment, lm=ScoringLM(TABLE), mode="score", calibration=method), rows, method=method)
    data = program.calibration_state.to_data()
    del data["prompt"]
    labels = {"label": ("positive", "negative")}
    program.calibration_state = Calibration.from_data(data, labels=labels, score_norm="sum")
    program.signature = program.signature.with_updated_field("label", type=Literal["negative", "positive"])
    if method == "batch":
        program.calibration_rows = []
        with pytest.raises(ConfigError, match="labels"):
            program(text="ok")
        return
    pred = program(text="ok")
    prior = program.current_prior()
    assert prior is not None and prior.labels == {"label": ("negative", "positive")}
    raw = pred.raw_probabilities["label"]
    expected = by_hand([raw["negative"], raw["positive"]], list(prior.priors["label"]))
    assert list(pred.probabilities["label"].values()) == pytest.approx(expected)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.with_updated_field("label", type=Literal["negative", "positive"]),
        lambda s: s.with_updated_field("label", type=Literal["positive", "negative", "neutral"]),
        lambda s: s.append("verdict", "output", type=Literal["positive", "negative"]).delete("label"),
        lambda s: s.with_updated_field("label", type=str),
        lambda s: s.append("why", "output"),
    ],
    ids=["reordered", "added", "renamed", "free-text", "free-text-after"],
)
def test_a_program_whose_labels_changed_after_calibrating_saves_an_artifact_that_loads(tmp_path, edit):
    # the prior fitted for the old labels was saved, and the artifact then failed to load
    # ("calibration of 'label' was fitted for labels [...]")
    program = calibrate(Predict(Sentiment, lm=ScoringLM(TABLE)), [{"text": "ok"}, {"text": "bad"}])
    program.signature = edit(program.signature)
    doc, path = _saved(tmp_path, program)
    assert "calibration_state" not in doc["predictors"][0]["extra"]
    assert load(path).predictors["self"].signature == program.signature


def test_a_prior_fitted_under_other_instructions_is_still_saved_and_loads(tmp_path):
    program = calibrate(Predict(Sentiment, lm=ScoringLM(TABLE), mode="score", calibration="batch"), [{"text": "ok"}])
    program.signature = program.signature.with_instructions("Classify the review.")
    doc, path = _saved(tmp_path, program)
    assert doc["predictors"][0]["extra"]["calibration_state"]["prompt"] == program.calibration_state.prompt
    assert load(path).predictors["self"].calibration_state == program.calibration_state


def test_a_scored_batch_predictor_without_a_prior_for_its_labels_is_not_saved_unloadable(tmp_path):
    # it was written with calibration 'batch' and no prior, which loading refuses
    fresh = Predict(Sentiment, mode="score", calibration="batch")
    with pytest.raises(ConfigError, match="calibrate"):
        fresh.save(tmp_path / "a.json")
    program = calibrate(Predict(Sentiment, lm=ScoringLM(TABLE), mode="score", calibration="batch"), [{"text": "ok"}])
    program.signature = program.signature.with_updated_field("label", type=Literal["negative", "positive"])
    with pytest.raises(ConfigError, match="calibrate"):
        program.save(tmp_path / "b.json")
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("prior", [[10**400, 1], [1, -(10**400)], [10**400, -(10**400)]])
def test_a_prior_with_an_integer_too_large_for_a_float_is_an_artifact_error(prior):
    # math.isfinite raised OverflowError on it
    data = {
        "method": "batch",
        "outputs": {"label": {"labels": ["a", "b"], "prior": prior}},
        "rows": 1,
        "score_norm": "sum",
    }
    with pytest.raises(ArtifactError, match="prior"):
        Calibration.from_data(data, labels={"label": ("a", "b")}, score_norm="sum")


_FINGERPRINT_SCRIPT = """
import pydantic
from oobleck import Example, Predict, Signature

class Tags(pydantic.BaseModel):
    names: set[str]

sig = Signature("text -> tags: Tags, label: Literal['a', 'b']", types={"Tags": Tags})
words = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"}
demo = Example(text="t", tags=Tags(names=words), label="a")
print(Predict(sig, demos=[demo]).prompt_fingerprint())
"""


def test_the_prompt_fingerprint_of_a_demo_with_a_set_is_the_same_in_every_process():
    # demos were hashed through str(), which prints a set in its per-process order: a prior
    # saved in one process was "fitted under another prompt" in the next
    root = Path(oobleck.__file__).resolve().parents[1]
    prints = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", _FINGERPRINT_SCRIPT], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        prints.add(done.stdout.strip())
    assert len(prints) == 1


def test_changing_score_norm_after_fitting_asks_for_a_refit():
    program = calibrate(Predict(Sentiment, lm=ScoringLM(TABLE)), [{"text": "ok"}])
    program.score_norm = "mean"
    program.calibration_rows = []  # as after loading: no rows to refit on
    with pytest.raises(ConfigError, match="refit"):
        program(text="ok")


def test_a_batch_prior_is_refitted_on_its_rows_when_the_prompt_changes():
    rows = [{"text": t} for t in ("ok", "fine", "bad", "meh")]
    lm = ScoringLM(TABLE)
    program = calibrate(Predict(Sentiment, lm=lm), rows)
    first = program.calibration_state
    assert first is not None and first.prompt == program.prompt_fingerprint()
    # what an optimizer does: a copy under other demos
    candidate = program.copy()
    candidate.demos = [oobleck.Example(text="great", label="positive")]
    sent = len(lm.requests)
    answer = candidate(text="ok")
    assert answer.usage.calls == 1 + len(rows)  # the prior for the new prompt, fitted once on the same rows
    assert len(lm.requests) == sent + 1 + len(rows)
    assert candidate(text="bad").usage.calls == 1  # and remembered
    refit = candidate.current_prior()
    assert refit is not None and refit.method == "batch" and refit.rows == len(rows)
    assert refit.prompt == candidate.prompt_fingerprint() != first.prompt
    # the original keeps its own prior and makes no extra call
    assert program(text="ok").usage.calls == 1 and program.calibration_state is first


def test_inspect_shows_the_calibration(tmp_path, capsys):
    program = calibrate(Predict(Sentiment, lm=ScoringLM(TABLE)), [{"text": t} for t in ("ok", "fine", "bad", "meh")])
    _, path = _saved(tmp_path, program)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    prior = program.calibration_state.priors["label"]
    assert (
        f"calibration batch, 4 rows, score_norm sum; prior label: positive {prior[0]:.3f}, negative {prior[1]:.3f}"
        in out
    )
    assert "scoring    labels ranked by likelihood" in out


# ---------------------------------------------------------------- metrics over distributions


def test_calibration_metrics_by_hand():
    golds = ["pos", "neg", "pos"]
    dists = [{"pos": 0.9, "neg": 0.1}, {"pos": 0.3, "neg": 0.7}, {"pos": 0.4, "neg": 0.6}]
    assert log_loss(golds, dists) == pytest.approx((-math.log(0.9) - math.log(0.7) - math.log(0.4)) / 3)
    assert brier_score(golds, dists) == pytest.approx((0.01 + 0.01 + 0.09 + 0.09 + 0.36 + 0.36) / 3)
    # bins: 0.9 -> bin 9 (right), 0.7 -> bin 7 (right), 0.6 -> bin 6 (wrong)
    assert expected_calibration_error(golds, dists) == pytest.approx((0.1 + 0.3 + 0.6) / 3)
    assert expected_calibration_error(golds, dists, bins=1) == pytest.approx(abs(2 / 3 - (0.9 + 0.7 + 0.6) / 3))
    assert log_loss(["pos"], [{"neg": 1.0}]) == pytest.approx(-math.log(1e-15))  # a label not named has 0


def test_calibration_metrics_refuse_mismatched_rows():
    with pytest.raises(ConfigError, match="one per row"):
        log_loss(["a", "b"], [{"a": 1.0}])
    with pytest.raises(ConfigError, match="no rows"):
        brier_score([], [])
    for bins in (0, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="bins"):
            expected_calibration_error(["a"], [{"a": 1.0}], bins=bins)  # type: ignore[arg-type]


def test_metrics_read_what_a_scored_prediction_carries():
    lm = ScoringLM(TABLE)
    p = calibrate(Predict(Sentiment, lm=lm), [{"text": t} for t in ("ok", "fine", "bad", "meh")])
    preds = [p(text=t) for t in ("ok", "bad")]
    value = log_loss(["negative", "negative"], [pr.probabilities["label"] for pr in preds])
    assert value == pytest.approx(-sum(math.log(pr.probabilities["label"]["negative"]) for pr in preds) / 2)


def test_threads_asking_for_the_same_prior_at_once_pay_for_it_once():
    import threading as _threading

    lm = ScoringLM(TABLE)
    p = Predict(Sentiment, lm=lm)
    barrier = _threading.Barrier(4)
    answers = []

    def call(text):
        barrier.wait()
        answers.append(p(text=text))

    threads = [_threading.Thread(target=call, args=(t,)) for t in ("ok", "fine", "bad", "meh")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 4
    assert len(lm.requests) == 4 + 3  # four answers, one contextual prior of three content-free calls
    assert sum(a.usage.calls for a in answers) == 7


async def _two_concurrent(p):
    import asyncio

    return await asyncio.gather(p.acall(text="ok"), p.acall(text="bad"))


def test_coroutines_on_one_loop_never_wait_for_each_other():
    import asyncio

    lm = ScoringLM(TABLE)
    p = Predict(Sentiment, lm=lm)
    first, second = asyncio.run(_two_concurrent(p))
    assert first.probabilities and second.probabilities
    assert first.label == p(text="ok").label
