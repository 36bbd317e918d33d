"""evaluate(): scores, errors up to a cap, usage, threads, writers, no printing."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from oobleck import (
    ConfigError,
    EvaluationResult,
    Example,
    FakeLM,
    LMRequest,
    LMResponseError,
    Predict,
    TooManyErrorsError,
    evaluate,
)
from oobleck.metrics import exact_match


def _question(request: LMRequest) -> str:
    m = re.search(r"\[\[ ## q ## \]\]\n(.*?)(?:\n\n|\Z)", request.messages[-1].content, re.S)
    assert m
    return m.group(1)


def _double(request: LMRequest) -> dict[str, str]:
    q = _question(request)
    if q.startswith("boom"):
        raise LMResponseError("server said no")
    return {"a": str(2 * int(q))}


def rows(n: int, *, wrong: int = 0, boom: int = 0) -> list[Example]:
    out = [Example(q=str(i), a=str(2 * i)).with_inputs("q") for i in range(n)]
    out += [Example(q=str(100 + i), a="nope").with_inputs("q") for i in range(wrong)]
    out += [Example(q=f"boom{i}", a="0").with_inputs("q") for i in range(boom)]
    return out


def test_score_is_a_percentage_with_one_row_per_example() -> None:
    program = Predict("q -> a", lm=FakeLM(_double))
    result = evaluate(program, rows(3, wrong=1), exact_match, progress=False)
    assert isinstance(result, EvaluationResult)
    assert result.score == 75.0
    assert result.scores == [1.0, 1.0, 1.0, 0.0]
    assert [r.index for r in result.rows] == [0, 1, 2, 3]
    assert result.rows[0].prediction is not None and result.rows[0].prediction.a == "0"
    assert result.errors == 0


def test_usage_is_summed_across_the_run() -> None:
    lm = FakeLM(_double)
    result = evaluate(Predict("q -> a", lm=lm), rows(5), exact_match, progress=False)
    assert result.usage.calls == 5 == len(lm.requests)
    assert result.usage.prompt_tokens == sum(r.usage.prompt_tokens for r in result.rows) > 0


def test_errors_are_counted_up_to_the_cap() -> None:
    program = Predict("q -> a", lm=FakeLM(_double))
    result = evaluate(program, rows(2, boom=2), exact_match, progress=False, max_errors=2, failure_score=-1.0)
    assert result.errors == 2
    assert result.scores == [1.0, 1.0, -1.0, -1.0]
    assert result.rows[2].prediction is None
    assert result.rows[2].error is not None and "LMResponseError" in result.rows[2].error


def test_one_error_past_the_cap_raises_a_clear_error() -> None:
    program = Predict("q -> a", lm=FakeLM(_double))
    with pytest.raises(TooManyErrorsError, match=r"3 of 5 examples failed, more than max_errors=2") as info:
        evaluate(program, rows(2, boom=3), exact_match, progress=False, max_errors=2)
    assert len(info.value.errors) == 3
    assert isinstance(info.value.__cause__, LMResponseError)


def test_unbounded_errors_with_none() -> None:
    program = Predict("q -> a", lm=FakeLM(_double))
    result = evaluate(program, rows(0, boom=15), exact_match, progress=False, max_errors=None)
    assert result.errors == 15 and result.score == 0.0


def test_a_metric_that_raises_counts_as_an_error() -> None:
    def bad(example, prediction):  # type: ignore[no-untyped-def]
        raise KeyError("oops")

    result = evaluate(Predict("q -> a", lm=FakeLM(_double)), rows(2), bad, progress=False)
    assert result.errors == 2


def test_missing_lm_is_fatal_at_once() -> None:
    with pytest.raises(ConfigError, match="no LM"):
        evaluate(Predict("q -> a"), rows(3), exact_match, progress=False, max_errors=None)


def test_rows_need_inputs() -> None:
    with pytest.raises(ConfigError, match="devset\\[0\\] has no inputs"):
        evaluate(Predict("q -> a", lm=FakeLM(_double)), [Example(q="1", a="2")], exact_match, progress=False)


def test_threads_give_the_same_result_in_devset_order() -> None:
    data = rows(20, wrong=3, boom=2)
    one = evaluate(Predict("q -> a", lm=FakeLM(_double)), data, exact_match, progress=False)
    many = evaluate(Predict("q -> a", lm=FakeLM(_double)), data, exact_match, num_threads=4, progress=False)
    assert one.scores == many.scores
    assert [r.index for r in many.rows] == list(range(len(data)))
    # The two LM errors reached the backend too: every attempt sent is a call.
    assert one.usage.calls == many.usage.calls == len(data)


def test_return_outputs_false_keeps_only_scores() -> None:
    result = evaluate(Predict("q -> a", lm=FakeLM(_double)), rows(2), exact_match, progress=False, return_outputs=False)
    assert all(r.prediction is None for r in result.rows) and result.score == 100.0


def test_progress_bar_never_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    evaluate(Predict("q -> a", lm=FakeLM(_double)), rows(3), exact_match, progress=True)
    assert capsys.readouterr().out == ""


def test_table_json_and_csv(tmp_path: Path) -> None:
    result = evaluate(Predict("q -> a", lm=FakeLM(_double)), rows(2, wrong=1, boom=1), exact_match, progress=False)
    text = result.table()
    assert text.splitlines()[0].startswith("exact_match: 50.00% over 4 examples, 1 errors")
    assert "LMResponseError" in text
    result.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["score"] == 50.0 and data["schema_version"] == 1 and len(data["rows"]) == 4
    assert data["rows"][1]["prediction"] == {"a": "2"} and data["rows"][3]["error"].startswith("LMResponseError")
    result.to_csv(tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert [line["score"] for line in lines] == ["1.0", "1.0", "0.0", "0.0"]
    assert lines[1]["pred.a"] == "2" and lines[0]["q"] == "0"


def test_a_prediction_missing_the_compared_field_fails_one_row_not_the_run():
    from oobleck import Example, MetricError, Module, Prediction, evaluate
    from oobleck.metrics import exact_match, f1
    from oobleck.optimize import BootstrapFewShot

    class SometimesPartial(Module):
        def forward(self, q):
            return Prediction(other="x") if q == "1" else Prediction(a="x")

    rows = [Example(q=str(i), a="x").with_inputs("q") for i in range(4)]
    for metric in (exact_match, f1):
        result = evaluate(SometimesPartial(), rows, metric, progress=False)
        failed = [r for r in result.rows if r.error]
        assert len(failed) == 1 and "MetricError" in failed[0].error and "no field 'a'" in failed[0].error
        assert result.score == 75.0
    with pytest.raises(MetricError):
        exact_match(rows[0], Prediction(other="x"))
    compiled = BootstrapFewShot(exact_match, max_labeled_demos=0).compile(SometimesPartial(), trainset=rows)
    assert compiled.provenance["optimizer"] == "BootstrapFewShot"
