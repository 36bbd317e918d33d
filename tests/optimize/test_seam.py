"""The public optimizer seam: a new optimizer needs only what oobleck.optimize exports."""

from __future__ import annotations

import random
import warnings
from typing import Any

import pytest

from oobleck import Example, FakeLM, Predict
from oobleck.metrics import exact_match
from oobleck.module import Module
from oobleck.optimize import (
    CompileRun,
    CostEstimate,
    InstructionSearch,
    JointSearch,
    LabeledFewShot,
    Optimizer,
    RandomSearch,
    ReflectiveEvolution,
    ensemble,
)
from oobleck.optimize._search import SearchKwargs, SearchOptions

ROWS = [Example(q=str(i), a="0").with_inputs("q") for i in range(8)]


class FirstRows(Optimizer):
    """A new optimizer written against the public seam only: the first ``k`` rows as demos."""

    cli_name = None

    def __init__(self, *, k: int = 2, **budget: Any) -> None:
        super().__init__(**budget)
        self.k = k

    def _settings(self) -> dict[str, Any]:
        return {"k": self.k}

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        return CostEstimate(program_runs=0, lm_calls=0, min_lm_calls=0, prompt_tokens=0)

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        compiled = program.copy()
        for p in compiled.predictors():
            p.demos = list(trainset[: self.k])
        run.scores = {"demos": self.k}
        run.notes = {"rng": random.Random(run.seed).random()}
        return compiled


def test_a_new_optimizer_on_the_public_seam_gets_the_whole_frame() -> None:
    program = Predict("q -> a")
    compiled = FirstRows(k=3).compile(program, trainset=ROWS, seed=4)
    assert program.demos == [] and len(compiled.predictors()[0].demos) == 3
    prov = compiled.provenance
    assert prov["optimizer"] == "FirstRows" and prov["settings"] == {"max_lm_calls": None, "max_tokens": None, "k": 3}
    assert prov["scores"] == {"demos": 3} and prov["notes"]["rng"] == random.Random(4).random()
    assert prov["lm_calls"] == 0 and prov["stopped_early"] is False and prov["trainset_size"] == 8
    assert FirstRows().compile(program, trainset=ROWS, dry_run=True) == CostEstimate(0, 0, 0, 0)


def test_every_provenance_record_has_the_same_core_shape() -> None:
    core = {"optimizer", "settings", "seed", "lm_calls", "tokens", "stopped_early"}
    members = [LabeledFewShot(k=k).compile(Predict("q -> a"), trainset=ROWS, seed=k) for k in (1, 2)]
    combined = ensemble(members)
    assert core <= set(members[0].provenance) and core <= set(combined.provenance)
    assert combined.provenance["lm_calls"] == 0 and combined.provenance["members"] == [m.provenance for m in members]


def test_the_search_options_are_declared_once() -> None:
    names = SearchOptions.names()
    assert set(SearchKwargs.__annotations__) == names
    assert names == {
        "num_threads",
        "max_errors",
        "racing",
        "require_significant",
        "prompt_tolerance",
        "val_fraction",
        "confirm_fraction",
        "max_lm_calls",
        "max_tokens",
    }
    for cls in (InstructionSearch, JointSearch, ReflectiveEvolution, RandomSearch):
        opt = cls(exact_match, num_threads=2, require_significant=True, max_lm_calls=7)
        assert opt.options.num_threads == 2 and opt.options.require_significant and opt.max_lm_calls == 7
    assert RandomSearch(exact_match).options.racing is False  # its default
    assert InstructionSearch(exact_match).options.racing is True
    with pytest.raises(TypeError, match="no option"):
        InstructionSearch(exact_match, num_thread=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="val_fraction"):
        ReflectiveEvolution(exact_match, val_fraction=1.5)
    with pytest.raises(ValueError, match="no option"):
        RandomSearch(exact_match, num_thread=2)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomSearch(exact_match, num_candidates=1),
        lambda: InstructionSearch(exact_match, breadth=1, depth=1),
        lambda: ReflectiveEvolution(exact_match, iterations=1),
    ],
)
def test_the_split_warning_points_at_the_caller(make: Any) -> None:
    lm = FakeLM(lambda r: {"a": "0", "instruction": "Say 0.", "summary": "digits"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make().compile(Predict("q -> a", lm=lm), trainset=ROWS, progress=False)
    split = [w for w in caught if "no valset given" in str(w.message)]
    assert len(split) == 1 and split[0].filename == __file__
