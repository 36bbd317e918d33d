"""Soft-prompt optimizers refuse bad input clearly, before loading or training anything."""

from __future__ import annotations

from typing import Literal

import pytest

import oobleck
from oobleck import Example, FakeLM, Predict
from oobleck.errors import ConfigError


class Sentiment(oobleck.Signature):
    """Classify the sentiment of a movie review sentence."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def metric(example, prediction, trace=None):
    return float(example.label == prediction.label)


def row(text: str, label: str) -> Example:
    return Example(text=text, label=label).with_inputs("text")


GOOD = [row("a delight", "positive"), row("a bore", "negative")]


def optimizers():
    from oobleck.soft import MultitaskPromptTuning, PrefixTuning, PromptTuning, PTuning

    return [
        cls(metric=metric, steps=2, progress=False)
        for cls in (PromptTuning, PrefixTuning, PTuning, MultitaskPromptTuning)
    ]


@pytest.mark.parametrize("index", range(4))
def test_an_empty_trainset_is_refused(index):
    optimizer = optimizers()[index]
    with pytest.raises(ConfigError, match="trainset is empty"):
        optimizer.compile(Predict(Sentiment, lm=FakeLM()), trainset=[])


@pytest.mark.parametrize("index", range(4))
def test_a_label_outside_the_literal_is_refused_before_training(index):
    optimizer = optimizers()[index]
    rows = [*GOOD, row("it was fine", "neutral")]
    with pytest.raises(
        ConfigError, match=r"trainset\[2\]: label='neutral' is not one of the labels \['positive', 'negative'\]"
    ):
        optimizer.compile(Predict(Sentiment, lm=FakeLM()), trainset=rows)


def test_a_valset_label_outside_the_literal_is_refused_too():
    from oobleck.soft import PromptTuning

    with pytest.raises(ConfigError, match=r"valset\[1\]: label='Positive'"):
        PromptTuning(metric=metric, progress=False).compile(
            Predict(Sentiment, lm=FakeLM()), trainset=GOOD, valset=[GOOD[0], row("great", "Positive")]
        )


def test_multitask_dry_run_counts_both_stages():
    from oobleck.soft import MultitaskPromptTuning, PromptTuning

    program = Predict(Sentiment, lm=FakeLM())
    single = PromptTuning(metric=metric, steps=8).compile(program, trainset=GOOD, dry_run=True)
    both = MultitaskPromptTuning(metric=metric, steps=8, adapt_steps=4).compile(program, trainset=GOOD, dry_run=True)
    assert single.program_runs == (8 // 2 + 2) * 2
    assert both.program_runs == single.program_runs + (4 // 1 + 2) * 2


def test_multitask_names_the_task_at_fault():
    from oobleck.soft import MultitaskPromptTuning, Task

    mpt = MultitaskPromptTuning(metric=metric, steps=2, progress=False)
    program = Predict(Sentiment, lm=FakeLM())
    with pytest.raises(ConfigError, match="task 'b': its trainset is empty"):
        mpt.compile_tasks({"a": Task(program, GOOD), "b": Task(program, [])})
    with pytest.raises(ConfigError, match=r"b\.trainset\[0\]: label='meh'"):
        mpt.compile_tasks({"a": Task(program, GOOD), "b": Task(program, [row("so so", "meh")])})
    with pytest.raises(ConfigError, match=r"b\.valset\[0\]: label='meh'"):
        mpt.compile_tasks({"a": Task(program, GOOD), "b": Task(program, GOOD, [row("so so", "meh")])})
    with pytest.raises(ConfigError, match="task 'a' runs on FakeLM.*TransformersLM"):
        mpt.compile_tasks({"a": Task(program, GOOD), "b": Task(program, GOOD)})
    with pytest.raises(ConfigError, match="at least one Task"):
        mpt.compile_tasks({})


@pytest.mark.parametrize(
    "bad",
    [
        {"lr": 0.0},
        {"lr": -1e-3},
        {"eval_every": 0},
        {"max_time_s": -1.0},
        {"steps": -1},
        {"batch_size": 0},
        {"num_virtual_tokens": 0},
    ],
)
def test_settings_out_of_range_are_refused_when_built(bad):
    from oobleck.soft import PromptTuning

    with pytest.raises(ConfigError, match=next(iter(bad))):
        PromptTuning(metric=metric, **bad)


@pytest.mark.parametrize("bad", [{"num_ranks": 0}, {"adapt_steps": -1}])
def test_multitask_settings_out_of_range_are_refused(bad):
    from oobleck.soft import MultitaskPromptTuning

    with pytest.raises(ConfigError, match=next(iter(bad))):
        MultitaskPromptTuning(metric=metric, **bad)
