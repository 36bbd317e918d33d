"""Optimizers compile scored, calibrated programs: each candidate is scored under its own prior."""

from __future__ import annotations

import math
from typing import Literal

import oobleck
from oobleck import Example, FakeLM, LMRequest, Predict
from oobleck.metrics import exact_match
from oobleck.optimize import BootstrapFewShot, RandomSearch

POSITIVE = ("good", "great", "fine", "fun")


class Review(oobleck.Signature):
    """Classify the review."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def biased_scores(request: LMRequest) -> dict[str, float]:
    """Right on the text's keywords but with a strong lean towards 'negative', which every
    demo shown makes stronger: only a prior fitted under the same prompt removes it."""
    text = request.messages[-1].content
    lean = 1.0 + 0.5 * (len(request.messages) - 2)  # each demo turn pair adds to the lean
    positive = any(w in text for w in POSITIVE)
    pos, neg = (0.0, -0.4) if positive else (-0.4, 0.0)
    table = {}
    for completion in request.score or ():
        table[completion] = pos - lean if "positive" in completion else neg
    return table


def rows() -> list[Example]:
    texts = [
        "good film",
        "bad film",
        "great plot",
        "dull plot",
        "fine acting",
        "awful acting",
        "fun story",
        "weak story",
    ]
    return [
        Example(text=t, label="positive" if any(w in t for w in POSITIVE) else "negative").with_inputs("text")
        for t in texts
    ]


def test_uncalibrated_scores_collapse_and_calibration_recovers_them() -> None:
    lm = FakeLM(scores=biased_scores)
    raw = Predict(Review, lm=lm, mode="score")
    assert {raw(text=r.text).label for r in rows()} == {"negative"}
    calibrated = oobleck.calibrate(Predict(Review, lm=lm), [r.inputs() for r in rows()])
    assert [calibrated(text=r.text).label for r in rows()] == [r.label for r in rows()]


def test_each_candidate_refits_its_batch_prior_and_the_winner_saves_its_own(tmp_path) -> None:
    lm = FakeLM(scores=biased_scores)
    data = rows()
    program = Predict(Review, lm=lm, calibration="batch")
    compiled = RandomSearch(exact_match, num_candidates=2, max_bootstrapped_demos=2, max_labeled_demos=2).compile(
        program, trainset=data, valset=data, seed=0
    )
    assert program.calibration_state is None and program.calibration_rows == []  # never changed
    best = compiled.predictors()[0]
    # every candidate (zero-shot, labelled demos, bootstrapped demos) fitted a prior of its own
    fitted = {key for key in best._priors.by_prompt if key.startswith("batch:")}
    assert len(fitted) >= 3
    state = best.current_prior()
    assert state is not None and state.prompt == best.prompt_fingerprint() and state.rows == len(data)
    scores = compiled.provenance["scores"]
    assert scores["best_score"] == 100.0
    # saved with the prior fitted under the winner's prompt; loaded, it needs no rows and no refit
    path = tmp_path / "p.json"
    compiled.save(path)
    loaded = oobleck.load(path, lm=FakeLM(scores=biased_scores)).predictors["self"]
    assert loaded.calibration_state is not None and loaded.calibration_state.priors == state.priors
    answer = loaded(text="good film")
    assert answer.label == "positive" and answer.usage.calls == 1
    assert math.isclose(sum(answer.probabilities["label"].values()), 1.0)


def test_bootstrap_teacher_runs_calibrated() -> None:
    lm = FakeLM(scores=biased_scores)
    data = rows()
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=4, max_labeled_demos=0).compile(
        Predict(Review, lm=lm, calibration="batch"), trainset=data
    )
    demos = compiled.predictors()[0].demos
    assert len(demos) == 4 and {d["label"] for d in demos} == {"positive", "negative"}
