"""One metric returning a score with feedback, fed to evaluate and to every optimizer that takes one.

There is one rule for a metric's value (``oobleck.metrics.outcome``) and one runner
(``oobleck._run.run_example``). Each optimizer must treat ``{"score": s, "feedback": f}``
exactly as it treats the plain score ``s`` (same demos, same candidates, same scores), and the
feedback must reach where it is used: evaluation rows and the reflection prompt.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oobleck import Example, FakeLM, LMRequest, Predict, evaluate
from oobleck.module import Module
from oobleck.optimize import BootstrapFewShot, InstructionSearch, JointSearch, RandomSearch, ReflectiveEvolution
from oobleck.optimize._identity import program_fingerprint

ROWS = [Example(q=f"question {i}", a=str(i % 2)).with_inputs("q") for i in range(12)]
TRAIN, VAL = ROWS[:6], ROWS[6:]


def feedback_metric(example: Any, prediction: Any, trace: Any = None) -> dict[str, Any]:
    """The metric under test: a score with feedback."""
    right = prediction.a == example.a
    return {
        "score": float(right),
        "feedback": "right" if right else f"FEEDBACK: expected {example.a}, got {prediction.a}",
    }


def plain_metric(example: Any, prediction: Any, trace: Any = None) -> bool:
    """The same score without feedback: what every optimizer must behave the same on."""
    return bool(prediction.a == example.a)


def answer(request: LMRequest) -> dict[str, str]:
    """Says "0" (right on half the rows); writes an instruction or a summary when asked."""
    return {"a": "0", "instruction": "Answer 0 or 1.", "summary": "numbered questions with 0/1 answers"}


def compile_with(
    make: Callable[[Callable[..., Any]], Any], metric: Callable[..., Any], **kw: Any
) -> tuple[Module, FakeLM]:
    lm = FakeLM(answer)
    compiled = make(metric).compile(Predict("q -> a", lm=lm), trainset=TRAIN, progress=False, seed=1, **kw)
    return compiled, lm


def same_behaviour(make: Callable[[Callable[..., Any]], Any], **kw: Any) -> Module:
    """Compile with both metrics; the programs and the scores must be the same. Returns the feedback one."""
    with_feedback, _ = compile_with(make, feedback_metric, **kw)
    plain, _ = compile_with(make, plain_metric, **kw)
    assert program_fingerprint(with_feedback) == program_fingerprint(plain)
    assert with_feedback.provenance["scores"] == plain.provenance["scores"]
    assert with_feedback.provenance["lm_calls"] == plain.provenance["lm_calls"]
    return with_feedback


def test_evaluate_scores_a_feedback_metric_and_keeps_the_feedback(tmp_path: Path) -> None:
    result = evaluate(Predict("q -> a", lm=FakeLM(answer)), ROWS, feedback_metric, progress=False)
    assert result.errors == 0
    assert result.score == 50.0
    assert result.scores == [1.0, 0.0] * 6
    assert [r.feedback for r in result.rows[:2]] == ["right", "FEEDBACK: expected 1, got 0"]
    assert result.to_dict()["rows"][1]["feedback"] == "FEEDBACK: expected 1, got 0"
    result.to_csv(tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv", encoding="utf-8", newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert lines[1]["feedback"] == "FEEDBACK: expected 1, got 0" and lines[1]["score"] == "0.0"
    plain = evaluate(Predict("q -> a", lm=FakeLM(answer)), ROWS, plain_metric, progress=False)
    assert plain.scores == result.scores and all(r.feedback is None for r in plain.rows)


def test_evaluate_takes_an_object_with_score_and_feedback() -> None:
    class Verdict:
        def __init__(self, ok: bool) -> None:
            self.score = 1.0 if ok else 0.25
            self.feedback = "ok" if ok else "close"

    result = evaluate(
        Predict("q -> a", lm=FakeLM(answer)), ROWS[:2], lambda e, p, t=None: Verdict(p.a == e.a), progress=False
    )
    assert result.scores == [1.0, 0.25] and [r.feedback for r in result.rows] == ["ok", "close"]


def test_a_metric_value_of_no_known_form_fails_its_rows_loudly() -> None:
    result = evaluate(Predict("q -> a", lm=FakeLM(answer)), ROWS[:2], lambda e, p, t=None: "yes", progress=False)
    assert result.errors == 2 and result.rows[0].error is not None and "score with feedback" in result.rows[0].error


def test_bootstrap_gets_its_demos_from_a_feedback_metric() -> None:
    make = lambda m: BootstrapFewShot(m, max_bootstrapped_demos=2, max_labeled_demos=2)  # noqa: E731
    compiled = same_behaviour(make)
    scores = compiled.provenance["scores"]
    assert scores["teacher_errors"] == 0
    assert scores["bootstrapped_rows"] == [0, 2]  # the rows whose answer is "0" pass
    demos = compiled.predictors()[0].demos
    assert [d["q"] for d in demos[:2]] == ["question 0", "question 2"] and all(d["a"] == "0" for d in demos[:2])


def test_random_search_bootstrap_candidates_get_demos_from_a_feedback_metric() -> None:
    make = lambda m: RandomSearch(m, num_candidates=2, max_bootstrapped_demos=2, max_labeled_demos=2)  # noqa: E731
    compiled = same_behaviour(make, valset=VAL)
    candidates = compiled.provenance["scores"]["candidates"]
    booted = [c for c in candidates if c["kind"].startswith("bootstrap")]
    assert len(booted) == 3 and all(c["bootstrapped_rows"] for c in booted)
    assert all(c["score"] == 50.0 and c["errors"] == 0 for c in candidates)


def test_instruction_search_scores_candidates_with_a_feedback_metric() -> None:
    make = lambda m: InstructionSearch(m, breadth=2, depth=1, n_demos=2)  # noqa: E731
    compiled = same_behaviour(make, valset=VAL)
    scores = compiled.provenance["scores"]
    assert scores["best_score"] == 50.0 and all(c["score"] == 50.0 for c in scores["candidates"])
    assert len(scores["candidates"]) >= 2


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="JointSearch needs optuna")
def test_joint_search_gets_bootstrapped_demo_sets_from_a_feedback_metric() -> None:
    make = lambda m: JointSearch(  # noqa: E731
        m, auto=None, num_trials=3, num_instructions=2, num_demo_sets=3, minibatch_size=3, max_bootstrapped_demos=2
    )
    compiled = same_behaviour(make, valset=VAL)
    demo_counts = {c["demos"] for c in compiled.provenance["scores"]["candidates"]}
    assert demo_counts - {0}  # some trial carried demos


def test_reflective_evolution_shows_the_feedback_to_the_reflection_lm() -> None:
    make = lambda m: ReflectiveEvolution(m, iterations=2, minibatch_size=3, demos=True, max_demos=2)  # noqa: E731
    compiled, lm = compile_with(make, feedback_metric, valset=VAL)
    reflections = [r for r in lm.requests if "Read how the step did" in r.messages[0].content]
    assert reflections, "no reflection call was made"
    shown = "\n".join(m.content for r in reflections for m in r.messages)
    assert "FEEDBACK: expected 1, got 0" in shown
    assert any(c["kind"] == "demos" and c["demos"] for c in compiled.provenance["scores"]["candidates"])
    # the plain metric scores the same; the reflection is told what was expected instead
    plain, plain_lm = compile_with(make, plain_metric, valset=VAL)
    start = [c for c in plain.provenance["scores"]["candidates"] if c["kind"] in ("start", "demos")]
    assert start == [c for c in compiled.provenance["scores"]["candidates"] if c["kind"] in ("start", "demos")]
    assert "FEEDBACK" not in json.dumps([m.content for r in plain_lm.requests for m in r.messages])


def test_auto_runs_its_members_on_a_feedback_metric() -> None:
    from oobleck.optimize import Auto

    rows = [Example(q=f"question {i}", a=str(i % 2)).with_inputs("q") for i in range(30)]
    make = lambda m: Auto(m, budget=300)  # noqa: E731
    compiled = same_behaviour(make, valset=rows[6:])
    scores = compiled.provenance["scores"]
    assert [m["name"] for m in scores["members"]][:2] == ["few_shot", "format"]
    assert all(m.get("selection_score") == 50.0 for m in scores["members"] if "skipped" not in m)
