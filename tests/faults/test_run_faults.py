"""A run survives its faults: truncation is flagged, the error cap stops a threaded evaluate promptly."""

from __future__ import annotations

import threading

import pytest

from oobleck import (
    Example,
    FakeLM,
    LMRequest,
    LMResponse,
    LMResponseError,
    ParseError,
    Predict,
    TooManyErrorsError,
    context,
)
from oobleck.evaluation import evaluate
from oobleck.lm.base import BaseLM
from oobleck.lm.types import Choice, Usage
from oobleck.metrics import exact_match


class Scripted(BaseLM):
    """Answers with fixed text and finish reason; counts calls."""

    def __init__(self, text: str, finish_reason: str = "stop") -> None:
        self.text = text
        self.finish_reason = finish_reason
        self.calls = 0
        self.lock = threading.Lock()

    @property
    def identity(self) -> dict[str, str]:
        return {"backend": "scripted", "model": "m"}

    def complete(self, request: LMRequest) -> LMResponse:
        with self.lock:
            self.calls += 1
        return LMResponse(choices=(Choice(text=self.text, finish_reason=self.finish_reason),), usage=Usage(calls=1))


CUT = "[[ ## answer ## ]]\nThe capital of France is Par"


def test_truncated_answer_is_a_recorded_warning_by_default(caplog):
    lm = Scripted(CUT, finish_reason="length")
    pred = Predict("question -> answer", lm=lm, max_tokens=8)(question="Capital of France?")
    assert pred.answer.endswith("Par") and len(pred.warnings) == 1
    assert "max_tokens=8" in pred.warnings[0] and "on_truncation" in pred.warnings[0]
    assert "finish_reason 'length'" in caplog.text and lm.calls == 1


def test_truncated_answer_is_a_parse_error_when_asked():
    lm = Scripted(CUT, finish_reason="length")
    with context(on_truncation="error"), pytest.raises(ParseError, match="max_tokens") as info:
        Predict("question -> answer", lm=lm)(question="Capital of France?")
    assert info.value.raw == CUT and info.value.reason == "truncated at max_tokens" and lm.calls == 1
    with context(on_truncation="error", max_retries=2), pytest.raises(ParseError):
        Predict("question -> answer", lm=lm)(question="Capital of France?")
    assert lm.calls == 4  # one call plus two counted retries


def test_complete_answers_carry_no_warning():
    pred = Predict("question -> answer", lm=Scripted("[[ ## answer ## ]]\nParis"))(question="q")
    assert pred.answer == "Paris" and pred.warnings == ()


def test_bad_truncation_policy_is_a_config_error():
    from oobleck import ConfigError

    with pytest.raises(ConfigError, match="on_truncation"), context(on_truncation="ignore"):
        pass


@pytest.mark.parametrize("threads", [1, 4])
def test_error_cap_stops_a_threaded_evaluate_promptly(threads):
    calls = 0
    lock = threading.Lock()

    def failing(request):
        nonlocal calls
        with lock:
            calls += 1
        raise LMResponseError("the server is on fire")

    dev = [Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(200)]
    with pytest.raises(TooManyErrorsError) as info:
        evaluate(
            Predict("question -> answer", lm=FakeLM(failing)),
            dev,
            exact_match,
            num_threads=threads,
            max_errors=3,
            progress=False,
        )
    assert len(info.value.errors) >= 4
    # The cap is reached at the 4th failure; at most the rows already running finish after it.
    assert calls <= 4 + threads, calls


def test_one_failing_row_is_one_failed_row():
    def answer(request):
        if "q3" in request.messages[-1].content:
            raise LMResponseError("row 3 breaks")
        return {"answer": "a"}

    dev = [Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(10)]
    result = evaluate(Predict("question -> answer", lm=FakeLM(answer)), dev, exact_match, num_threads=4, progress=False)
    assert result.score == 90.0 and [r.index for r in result.rows if r.error] == [3]
    assert len(result.rows) == 10


def test_a_cut_answer_that_does_not_parse_says_it_was_cut():
    lm = Scripted("[[ ## reasoning ## ]]\nLet me think about this carefully, step by", finish_reason="length")
    with pytest.raises(ParseError, match=r"cut at max_tokens=16.*raise max_tokens") as info:
        Predict("question -> reasoning, answer", lm=lm, max_tokens=16)(question="Capital of France?")
    assert info.value.raw == lm.text and info.value.field is not None
    complete = Scripted("[[ ## reasoning ## ]]\nno answer field", finish_reason="stop")
    with pytest.raises(ParseError) as plain:
        Predict("question -> reasoning, answer", lm=complete)(question="q")
    assert "cut" not in str(plain.value)
