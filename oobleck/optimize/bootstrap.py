"""BootstrapFewShot: demos taken from the teacher's own successful runs.

The teacher (by default the program itself) runs over the trainset under ``oobleck.trace()``.
When the metric passes a run, every predictor call in that run becomes a demo for the
student's predictor of the same name (names from ``named_predictors()``), so multi-step
programs get demos for their inner steps too. Labelled rows pad the rest.

Round ``r > 0`` revisits rows that failed, asking for a distinct sample: the requests carry
``sample_index=r`` (a new cache key) and, by default, ``temperature=1.0``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from oobleck._estimate import CostEstimate, Expected, bootstrap_runs, calls_per_run, run_shape, tokens_per_run
from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.metrics import metric_name
from oobleck.module import Module
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.optimize._bootstrap import Bootstrapper, TeacherRun, balanced_sample, demo_set, labelled_for

__all__ = ["BootstrapFewShot"]

log = logging.getLogger("oobleck.optimize")


class BootstrapFewShot(Optimizer):
    """Few-shot demos from the teacher's traces that pass the metric, padded with labelled rows.

    Args:
        metric: ``fn(example, prediction, trace) -> float | bool``; here ``trace`` is the list
            of the run's TraceEntry records.
        max_bootstrapped_demos: rows of bootstrapped demos per predictor.
        max_labeled_demos: total demos per predictor after padding with labelled rows
            (0: no labelled padding).
        max_rounds: passes over the trainset; later passes retry failed rows with a fresh sample.
        teacher: a program with the same predictor names (default: the program itself, shown
            ``teacher_shots`` labelled rows; the row being asked is never among them).
        teacher_shots: labelled rows the default teacher sees, balanced across labels when the
            labels look like classes (default: ``max_labeled_demos``; 0: the bare program).
        metric_threshold: a run passes when its score is at least this (default: truthy score).
        max_errors: teacher runs that may fail before compile raises (None: any number).
        round_temperature: temperature for rounds after the first (None: unchanged).
        max_lm_calls: stop cleanly at this many LM calls (see :class:`Optimizer`).
        max_tokens: stop cleanly at this many tokens.

    Example:
        >>> from oobleck import Example, FakeLM, Predict
        >>> from oobleck.metrics import exact_match
        >>> train = [Example(q=str(i), a="0").with_inputs("q") for i in range(3)]
        >>> opt = BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=0)
        >>> compiled = opt.compile(Predict("q -> a", lm=FakeLM([{"a": "0"}], cycle=True)), trainset=train)
        >>> [d["q"] for d in compiled.predictors()[0].demos]
        ['0', '1']
    """

    cli_name = "bootstrap"
    needs_metric = True

    #: How a program is bootstrapped: the options that RandomSearch passes through.
    OPTIONS = frozenset(
        {
            "max_bootstrapped_demos",
            "max_labeled_demos",
            "max_rounds",
            "teacher",
            "teacher_shots",
            "metric_threshold",
            "round_temperature",
        }
    )

    def __init__(
        self,
        metric: Callable[..., float | bool],
        *,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        teacher: Module | None = None,
        teacher_shots: int | None = None,
        metric_threshold: float | None = None,
        max_errors: int | None = 10,
        round_temperature: float | None = 1.0,
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__(max_lm_calls=max_lm_calls, max_tokens=max_tokens)
        self.teacher_shots = teacher_shots
        if max_bootstrapped_demos < 0 or max_labeled_demos < 0 or max_rounds < 1:
            raise ConfigError("max_bootstrapped_demos and max_labeled_demos must be >= 0 and max_rounds >= 1")
        self.metric = metric
        self.max_bootstrapped_demos = max_bootstrapped_demos
        self.max_labeled_demos = max_labeled_demos
        self.max_rounds = max_rounds
        self.teacher = teacher
        self.metric_threshold = metric_threshold
        self.max_errors = max_errors
        self.round_temperature = round_temperature

    def _settings(self) -> dict[str, Any]:
        return {
            "metric": metric_name(self.metric),
            "max_bootstrapped_demos": self.max_bootstrapped_demos,
            "max_labeled_demos": self.max_labeled_demos,
            "max_rounds": self.max_rounds,
            "teacher": "program" if self.teacher is None else type(self.teacher).__name__,
            "teacher_shots": self._teacher_shots(),
            "metric_threshold": self.metric_threshold,
            "max_errors": self.max_errors,
            "round_temperature": self.round_temperature,
        }

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        first = trainset[0] if trainset else None
        per_run = calls_per_run(program, first)
        runs = len(trainset) * self.max_rounds if self.max_bootstrapped_demos else 0
        fewest = min(self.max_bootstrapped_demos, len(trainset))
        expected = Expected(run_shape(program, trainset))
        teacher_demos = min(self._teacher_shots(), max(len(trainset) - 1, 0))
        teacher_runs = bootstrap_runs(len(trainset), self.max_bootstrapped_demos, rounds=self.max_rounds)
        expected.runs(teacher_runs, teacher_demos, prompts=teacher_runs)  # the asked row is left out of the shots
        return expected.into(
            CostEstimate(
                program_runs=runs,
                lm_calls=runs * per_run,
                min_lm_calls=fewest * per_run,
                prompt_tokens=runs * tokens_per_run(program, first),
                breakdown={"bootstrap": runs},
            )
        )

    def _teacher_shots(self) -> int:
        if self.teacher is not None:
            return 0
        return self.max_labeled_demos if self.teacher_shots is None else self.teacher_shots

    def default_teacher(self, program: Module, trainset: Sequence[Example], seed: int) -> Module:
        """The program shown ``teacher_shots`` labelled rows (balanced across labels).

        A zero-shot small model passes few rows, and mostly rows of the one label it favours;
        a few labelled examples make a better teacher (the row being asked is always removed
        from its demos).
        """
        teacher = program.copy()
        shots = self._teacher_shots()
        if shots > 0 and trainset:
            rows = balanced_sample(trainset, shots, random.Random(seed))
            for p in teacher.predictors():
                p.demos = labelled_for(p, rows)
        return teacher

    def make_bootstrapper(self, program: Module, run: CompileRun, trainset: Sequence[Example]) -> Bootstrapper:
        """The Bootstrapper for ``program``, restored from ``run``'s checkpoint state."""
        restored = {k: TeacherRun.from_data(v) for k, v in run.state.get("runs", {}).items()}
        teacher = self.teacher.copy() if self.teacher is not None else self.default_teacher(program, trainset, run.seed)
        boot = Bootstrapper(
            teacher=teacher,
            student_names=[n for n, _ in program.named_predictors()],
            metric=self.metric,
            metric_threshold=self.metric_threshold,
            max_errors=self.max_errors,
            round_temperature=self.round_temperature,
            runs=restored,
        )
        return boot

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        boot = self.make_bootstrapper(program, run, trainset)
        boot.on_run = lambda: run.save({"runs": {k: v.to_data() for k, v in boot.runs.items()}})
        compiled, chosen, stopped = demo_set(
            "bootstrap",
            program,
            trainset,
            boot,
            rng=random.Random(run.seed),
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            max_rounds=self.max_rounds,
        )
        run.scores = {
            "bootstrapped_rows": chosen or [],
            "teacher_runs": len(boot.runs),
            "teacher_passed": sum(1 for r in boot.runs.values() if r.passed),
            "teacher_errors": boot.errors,
        }
        if stopped:
            log.info("bootstrap stopped at the budget after %d teacher runs", len(boot.runs))
        return compiled
