"""The CLI reads its optimizer choices from the classes: cli_name, needs_metric, prompt_lm_option."""

from __future__ import annotations

import inspect

import pytest

from oobleck import optimize
from oobleck.cli._commands import OPTIMIZERS
from oobleck.cli._parser import build_parser


def test_the_cli_offers_every_exported_optimizer_by_its_cli_name() -> None:
    assert {n: c.__name__ for n, c in OPTIMIZERS.items()} == {
        "labeled": "LabeledFewShot",
        "bootstrap": "BootstrapFewShot",
        "random_search": "RandomSearch",
        "knn": "KNN",
        "instructions": "InstructionSearch",
        "joint": "JointSearch",
        "reflective": "ReflectiveEvolution",
        "auto": "Auto",
    }
    exported = {getattr(optimize, n) for n in optimize.__all__}
    assert set(OPTIMIZERS.values()) <= exported
    choices = next(
        a.choices
        for a in build_parser()._subparsers._group_actions[0].choices["compile"]._actions
        if "--optimizer" in a.option_strings
    )
    assert sorted(choices) == sorted(OPTIMIZERS)


@pytest.mark.parametrize("cls", sorted(set(OPTIMIZERS.values()), key=lambda c: c.__name__))
def test_the_class_facts_match_the_constructors(cls: type[optimize.Optimizer]) -> None:
    params = inspect.signature(cls.__init__).parameters
    first = list(params.values())[1]
    # needs_metric: the metric is the constructor's first (positional) argument
    assert cls.needs_metric == (first.name == "metric" and first.kind is first.POSITIONAL_OR_KEYWORD)
    # prompt_lm_option: a keyword the constructor takes
    if cls.prompt_lm_option is not None:
        assert cls.prompt_lm_option in params
    assert {c.prompt_lm_option for c in OPTIMIZERS.values()} == {None, "prompt_lm", "reflection_lm"}
