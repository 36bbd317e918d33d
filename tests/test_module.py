from __future__ import annotations

import asyncio

import pytest

from oobleck import (
    Capabilities,
    ChainOfThought,
    ConfigError,
    FakeLM,
    InputError,
    JSONAdapter,
    Module,
    OpenAILM,
    ParseError,
    Predict,
    context,
    trace,
)
from oobleck.lm.types import LMRequest


class TwoStep(Module):
    def __init__(self):
        self.draft = Predict("question -> draft")
        self.final = ChainOfThought("question, draft -> answer: int")

    def forward(self, question):
        draft = self.draft(question=question).draft
        return self.final(question=question, draft=draft)


def test_missing_and_unknown_inputs():
    p = Predict("context, question -> answer", lm=FakeLM([]))
    with pytest.raises(InputError, match=r"missing input\(s\) \['context'\]"):
        p(question="q")
    with pytest.raises(InputError, match=r"unknown input\(s\) \['qestion'\]"):
        p(context="c", question="q", qestion="typo")
    with pytest.raises(InputError, match="by name"):
        p("positional")
    assert p.lm.requests == []  # type: ignore[union-attr]


def test_no_lm_names_all_three_ways():
    with pytest.raises(ConfigError) as info:
        Predict("q -> a")(q="x")
    msg = str(info.value)
    assert "lm=" in msg and "set_lm" in msg and "oobleck.context" in msg


def test_unknown_decoding_parameter():
    with pytest.raises(ConfigError, match="temprature"):
        Predict("q -> a", temprature=0.5)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_tokens": -5}, "max_tokens must be at least 1"),
        ({"max_tokens": True}, "max_tokens must be an integer"),
        ({"temperature": -0.1}, "temperature must be at least 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"top_p": 0}, "top_p must be in"),
        ({"n": 0}, "n must be at least 1"),
        ({"stop": ["", "x"]}, "stop must be"),
    ],
)
def test_decoding_settings_out_of_bounds_are_refused_where_they_are_given(setting, message):
    with pytest.raises(ConfigError, match=message):
        Predict("q -> a", **setting)
    with pytest.raises(ConfigError, match=f"OpenAILM: {message}"):
        OpenAILM(model="m", api_key="k", base_url="http://127.0.0.1:9/v1", **setting)


@pytest.mark.parametrize(
    "setting", [{"max_tokens": -5}, {"max_tokens": 0}, {"temperature": -0.1}, {"top_p": 0}, {"top_p": 2}, {"n": 0}]
)
def test_a_request_out_of_bounds_is_refused(setting):
    with pytest.raises(ValueError, match=next(iter(setting))):
        LMRequest(messages=(), **setting)


def test_decoding_settings_in_bounds_pass():
    Predict("q -> a", max_tokens=1, temperature=0, top_p=1, n=2, stop=["\n"], top_logprobs=0)
    LMRequest(messages=(), max_tokens=1, temperature=0.0, top_p=1.0, top_logprobs=0)


def test_render_makes_no_call_and_matches_what_is_sent():
    lm = FakeLM([{"answer": "4"}])
    p = Predict("question -> answer", lm=lm, demos=[{"question": "1+1", "answer": "2"}])
    rendered = p.render(question="2+2")
    assert lm.requests == []
    p(question="2+2")
    assert list(lm.requests[0].messages) == rendered


def test_render_calls_of_a_multi_step_program():
    program = TwoStep()
    calls = program.render_calls(question="why?")
    assert [c.predictor for c in calls] == ["draft", "final.predict"]
    assert "{draft}" in calls[1].messages[-1].content  # the placeholder for the earlier output
    with pytest.raises(ConfigError, match="render_calls"):
        program.render(question="why?")


def test_named_predictors_and_copy_independence():
    program = TwoStep()
    assert [n for n, _ in program.named_predictors()] == ["draft", "final.predict"]
    clone = program.copy()
    clone.draft.demos.append({"question": "x", "draft": "y"})  # type: ignore[arg-type]
    clone.final.predict.signature = clone.final.predict.signature.with_instructions("New.")
    assert program.draft.demos == [] and program.final.predict.instructions != "New."
    assert clone.draft is not program.draft


def test_usage_sums_over_a_program_run():
    lm = FakeLM([{"draft": "d"}, {"reasoning": "r", "answer": 3}])
    with context(lm=lm):
        pred = TwoStep()(question="q")
    assert pred.answer == 3
    assert pred.usage.calls == 2
    assert pred.usage.prompt_tokens == sum(sum((len(m.content) + 3) // 4 for m in r.messages) for r in lm.requests)


def test_parse_failure_raises_by_default_and_retries_are_explicit():
    lm = FakeLM(["[[ ## answer ## ]]\nfour", "[[ ## answer ## ]]\n4"])
    p = Predict("question -> answer: int", lm=lm)
    with pytest.raises(ParseError):
        p(question="2+2")
    assert len(lm.requests) == 1  # no silent second call

    lm = FakeLM(["[[ ## answer ## ]]\nfour", "[[ ## answer ## ]]\n4"])
    p = Predict("question -> answer: int", lm=lm, max_retries=1)
    with trace() as t:
        pred = p(question="2+2")
    assert pred.answer == 4
    assert pred.usage.retries == 1 and pred.usage.calls == 2
    assert len(lm.requests) == 2
    retry_msgs = lm.requests[1].messages
    assert retry_msgs[-2].content == "[[ ## answer ## ]]\nfour" and "could not be read" in retry_msgs[-1].content
    assert [e.error is not None for e in t.entries] == [True, False]


def test_n_samples_give_completions():
    lm = FakeLM([{"answer": "a"}, {"answer": "b"}, {"answer": "c"}])
    pred = Predict("q -> answer", lm=lm, n=3)(q="x")
    assert pred.answer == "a"
    assert [c["answer"] for c in pred.completions] == ["a", "b", "c"]


def test_json_adapter_uses_response_format_where_the_backend_declares_it():
    lm = FakeLM([{"answer": 7}], capabilities=Capabilities(json_schema=True))
    pred = Predict("q -> answer: int", lm=lm, adapter=JSONAdapter())(q="x")
    assert pred.answer == 7
    assert lm.requests[0].response_format is not None
    plain = FakeLM([{"answer": 7}])
    assert Predict("q -> answer: int", lm=plain, adapter=JSONAdapter())(q="x").answer == 7
    assert plain.requests[0].response_format is None


def test_async_end_to_end():
    lm = FakeLM(
        lambda req: (
            {"draft": "d"}
            if "produce the fields `draft`" in req.messages[0].content
            else {"reasoning": "r", "answer": 1}
        )
    )

    async def main():
        with context(lm=lm):
            return await asyncio.gather(*(TwoStep().acall(question=str(i)) for i in range(5)))

    preds = asyncio.run(main())
    assert [p.answer for p in preds] == [1] * 5
    assert all(p.usage.calls == 2 for p in preds)


def test_trace_records_each_call():
    lm = FakeLM([{"draft": "d"}, {"reasoning": "r", "answer": 3}])
    program = TwoStep()
    with context(lm=lm), trace() as t:
        program(question="q")
    assert [e.predictor for e in t.entries] == [program.draft, program.final.predict]
    assert t.entries[1].inputs == {"question": "q", "draft": "d"}
    assert t.entries[1].outputs == {"reasoning": "r", "answer": 3}
    assert t.usage.calls == 2


def test_lm_errors_propagate_and_are_traced():
    p = Predict("q -> a", lm=FakeLM([]))
    with trace() as t, pytest.raises(Exception, match="ran out"):
        p(q="x")
    assert t.entries[0].error is not None
