"""The bootstrapper shared by the few-shot optimizers: teacher runs, demo collection, assembly.

A :class:`Bootstrapper` runs a teacher program over trainset rows under ``oobleck.trace()`` and
remembers each (row, round) outcome, so candidates that need the same row never pay twice.
:func:`assemble` puts bootstrapped demos (padded with labelled rows) on a copy of the student.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from oobleck._run import run_example
from oobleck.context import context
from oobleck.errors import BudgetExceededError, ConfigError, TooManyErrorsError
from oobleck.example import Example, from_data, to_data
from oobleck.module import Module

__all__ = ["Bootstrapper", "DemoSetKind", "TeacherRun", "assemble", "balanced_sample", "demo_set", "label_groups"]

log = logging.getLogger("oobleck.optimize")


@dataclass(slots=True)
class TeacherRun:
    """The outcome of the teacher on one row in one round.

    Attributes:
        passed: the run finished and the metric passed it.
        demos: per student predictor name, the demos that run produced (only when passed).
        error: ``"Type: message"`` when the run or the metric raised.
        score: the metric's score (None when it errored).
    """

    passed: bool
    demos: dict[str, list[Example]]
    error: str | None = None
    score: float | None = None

    def to_data(self) -> dict[str, Any]:
        """JSON data for a checkpoint."""
        return {
            "passed": self.passed,
            "error": self.error,
            "score": self.score,
            "demos": {name: [to_data(d) for d in ds] for name, ds in self.demos.items()},
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TeacherRun:
        """Rebuild from :meth:`to_data`."""
        demos = {name: [from_data(d) for d in ds] for name, ds in data["demos"].items()}
        return cls(passed=bool(data["passed"]), demos=demos, error=data.get("error"), score=data.get("score"))


class Bootstrapper:
    """Runs a teacher on rows, remembering each (row, round) outcome so it is never paid twice.

    Internal to the bootstrap optimizers; RandomSearch shares one across its candidates.
    """

    def __init__(
        self,
        *,
        teacher: Module,
        student_names: Sequence[str],
        metric: Callable[..., Any],
        metric_threshold: float | None,
        max_errors: int | None,
        round_temperature: float | None,
        runs: dict[str, TeacherRun] | None = None,
        on_run: Callable[[], None] | None = None,
    ) -> None:
        teacher_names = [n for n, _ in teacher.named_predictors()]
        if sorted(teacher_names) != sorted(student_names):
            raise ConfigError(
                f"the teacher's predictors {teacher_names} do not match the student's {list(student_names)}; "
                "a teacher must have the same structure (predictor names) as the program"
            )
        self.teacher = teacher
        self.metric = metric
        self.metric_threshold = metric_threshold
        self.max_errors = max_errors
        self.round_temperature = round_temperature
        self.runs: dict[str, TeacherRun] = dict(runs or {})
        self.on_run = on_run
        self._hot: Module | None = None

    @property
    def errors(self) -> int:
        """How many teacher runs failed."""
        return sum(1 for r in self.runs.values() if r.error is not None)

    def _teacher_for(self, ex: Example, rnd: int) -> Module:
        teacher = self.teacher
        if rnd > 0 and self.round_temperature is not None:
            if self._hot is None:
                self._hot = self.teacher.copy()
                for p in self._hot.predictors():
                    p.config["temperature"] = self.round_temperature
            teacher = self._hot
        if any(d == ex for p in teacher.predictors() for d in p.demos):
            # Never let the teacher see the answer it is asked for.
            teacher = teacher.copy()
            for p in teacher.predictors():
                p.demos = [d for d in p.demos if d != ex]
        return teacher

    def run(self, index: int, ex: Example, rnd: int) -> TeacherRun:
        """The teacher's outcome on row ``index`` in round ``rnd`` (run at most once)."""
        key = f"{index}:{rnd}"
        known = self.runs.get(key)
        if known is not None:
            return known
        teacher = self._teacher_for(ex, rnd)
        names = {id(p): n for n, p in teacher.named_predictors()}
        with context(sample_index=rnd):
            result = run_example(teacher, ex, self.metric)
        outcome: TeacherRun
        if result.error is not None:  # counted; too many raise below
            outcome = TeacherRun(passed=False, demos={}, error=result.error_text)
            log.debug("bootstrap: row %d round %d failed: %r", index, rnd, result.error)
        else:
            score = result.score
            passed = bool(score) if self.metric_threshold is None else score >= self.metric_threshold
            demos: dict[str, list[Example]] = {}
            if passed:
                for entry in result.entries:
                    name = names.get(id(entry.predictor))
                    if name is None or entry.outputs is None:
                        continue
                    demo = Example({**entry.inputs, **entry.outputs}).with_inputs(*entry.inputs)
                    demos.setdefault(name, []).append(demo)
            outcome = TeacherRun(passed=passed, demos=demos, score=score)
        self.runs[key] = outcome
        if self.on_run is not None:
            self.on_run()
        if outcome.error is not None and self.max_errors is not None and self.errors > self.max_errors:
            raise TooManyErrorsError(
                f"{self.errors} teacher runs failed during bootstrapping, more than max_errors={self.max_errors}; "
                f"last (row {index}): {outcome.error}. Fix the cause or raise max_errors=",
                [],
            )
        return outcome

    def collect(
        self, trainset: Sequence[Example], order: Sequence[int], *, max_demos: int, max_rounds: int
    ) -> tuple[list[int], dict[str, list[Example]], bool]:
        """Bootstrap over ``order`` until ``max_demos`` rows pass, or the budget runs out.

        Returns:
            The row indices that passed (in the order found), the demos per predictor name,
            and whether the budget stopped the search.
        """
        chosen: list[int] = []
        demos: dict[str, list[Example]] = {}
        try:
            self._collect_into(trainset, order, max_demos, max_rounds, chosen, demos)
        except BudgetExceededError:
            return chosen, demos, True
        return chosen, demos, False

    def _collect_into(
        self,
        trainset: Sequence[Example],
        order: Sequence[int],
        max_demos: int,
        max_rounds: int,
        chosen: list[int],
        demos: dict[str, list[Example]],
    ) -> None:
        # For classification-like data, no label may take more than its share of the demos:
        # a small model that answers one label most of the time passes mostly on rows of
        # that label, and demos that all show it teach it to say nothing else. Rows of a
        # full label are skipped before they are run (no call spent), and a label whose rows
        # keep failing stops being tried after twice its share of attempts; a last pass
        # without shares fills what the rarer labels could not (rows already run cost nothing).
        groups = label_groups(trainset)
        share = -(-max_demos // len(set(groups.values()))) if groups else max_demos
        balanced = bool(groups) and share < max_demos
        taken: dict[Any, int] = {}
        tried: dict[Any, int] = {}
        for cap in [share, max_demos] if balanced else [max_demos]:
            for rnd in range(max_rounds):
                for i in order:
                    if len(chosen) >= max_demos:
                        return
                    if i in chosen:
                        continue
                    group = groups.get(i)
                    if taken.get(group, 0) >= cap or (cap == share and balanced and tried.get(group, 0) >= 2 * share):
                        continue
                    tried[group] = tried.get(group, 0) + 1
                    outcome = self.run(i, trainset[i], rnd)
                    if outcome.passed:
                        chosen.append(i)
                        taken[group] = taken.get(group, 0) + 1
                        for name, ds in outcome.demos.items():
                            demos.setdefault(name, []).extend(ds)


#: The kinds of demo set the searches compare (see :func:`demo_set`).
DemoSetKind = Literal["zero_shot", "labeled", "bootstrap", "bootstrap_shuffled"]


def demo_set(
    kind: DemoSetKind,
    program: Module,
    trainset: Sequence[Example],
    boot: Bootstrapper,
    *,
    rng: random.Random,
    max_bootstrapped_demos: int,
    max_labeled_demos: int,
    max_rounds: int,
) -> tuple[Module, list[int] | None, bool]:
    """A copy of ``program`` carrying one kind of demo set.

    - ``"zero_shot"``: no demos;
    - ``"labeled"``: labelled rows only (``max_labeled_demos``, drawn with ``rng``);
    - ``"bootstrap"``: a bootstrap over the trainset in order, up to ``max_bootstrapped_demos``,
      padded with labelled rows;
    - ``"bootstrap_shuffled"``: the same over a shuffle drawn with ``rng``, up to a number of
      demos drawn from 1 to ``max_bootstrapped_demos``.

    Returns:
        The program, the trainset rows whose runs became demos (None for the first two kinds),
        and whether the budget stopped the bootstrap.
    """
    if kind == "zero_shot":
        compiled = program.copy()
        for p in compiled.predictors():
            p.demos = []
        return compiled, None, False
    order = list(range(len(trainset)))
    if kind == "labeled":
        compiled = assemble(
            program, trainset, order, [], {}, max_bootstrapped_demos=0, max_labeled_demos=max_labeled_demos, rng=rng
        )
        return compiled, None, False
    max_demos = max_bootstrapped_demos
    if kind == "bootstrap_shuffled":
        rng.shuffle(order)
        max_demos = rng.randint(1, max_demos) if max_demos else 0
    chosen, demos, stopped = boot.collect(trainset, order, max_demos=max_demos, max_rounds=max_rounds)
    compiled = assemble(
        program,
        trainset,
        order,
        chosen,
        demos,
        max_bootstrapped_demos=max_demos,
        max_labeled_demos=max_labeled_demos,
        rng=rng,
    )
    return compiled, list(chosen), stopped


def balanced_sample(rows: Sequence[Example], k: int, rng: random.Random) -> list[Example]:
    """``k`` rows drawn with ``rng``, taking the labels in turn when they look like classes."""
    groups = label_groups(rows)
    order = list(range(len(rows)))
    rng.shuffle(order)
    if not groups:
        return [rows[i] for i in order[:k]]
    by_label: dict[Any, list[int]] = {}
    for i in order:
        by_label.setdefault(groups[i], []).append(i)
    picked: list[int] = []
    queues = list(by_label.values())
    while len(picked) < k and any(queues):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop(0))
    return [rows[i] for i in picked]


def label_groups(trainset: Sequence[Example], *, max_groups: int = 20) -> dict[int, Any]:
    """Each row's label values, when the labels look like classes; else an empty dict.

    Labels look like classes when every row's label values are short scalars (str, int, bool)
    and there are between 2 and ``max_groups`` distinct combinations.
    """
    keys: dict[int, Any] = {}
    for i, ex in enumerate(trainset):
        values = tuple(ex.labels().values())
        if not values or not all(isinstance(v, (str, int, bool)) and len(str(v)) <= 40 for v in values):
            return {}
        keys[i] = values
    return keys if 2 <= len(set(keys.values())) <= max_groups else {}


def assemble(
    student: Module,
    trainset: Sequence[Example],
    order: Sequence[int],
    chosen: Sequence[int],
    demos: Mapping[str, list[Example]],
    *,
    max_bootstrapped_demos: int,
    max_labeled_demos: int,
    rng: random.Random,
) -> Module:
    """Set every predictor's demos on a copy of ``student``: bootstrapped first, labelled rows after.

    ``max_bootstrapped_demos`` counts successful runs, and :meth:`Bootstrapper.collect` already
    stops at that many: ``demos`` holds every call of each run it kept. A predictor called
    several times in one run (a ReAct step, once per tool call) keeps all of them, so a demo
    trajectory is whole: cutting its list at ``max_bootstrapped_demos`` entries would keep the
    first steps of one run and lose its finishing step and every other run.
    """
    compiled = student.copy()
    unused = [trainset[i] for i in order if i not in set(chosen)]
    for name, predictor in compiled.named_predictors():
        boot = list(demos.get(name, [])) if max_bootstrapped_demos else []
        fitting = labelled_for(predictor, unused)
        n_pad = min(max(max_labeled_demos - len(boot), 0), len(fitting))
        predictor.demos = boot + rng.sample(fitting, n_pad)
    return compiled


def labelled_for(predictor: Any, rows: Sequence[Example]) -> list[Example]:
    """The rows that can be a labelled demo of ``predictor``: those holding one of its outputs.

    In a multi-step program a row labels only some steps (a question and its answer say
    nothing about the search query in between); a demo with none of a step's outputs would
    teach an empty answer, so such steps get bootstrapped demos only. (A ChainOfThought step
    still takes rows without reasoning: they hold its answer.)
    """
    outputs = predictor.signature.output_fields
    return [row for row in rows if any(name in row for name in outputs)]
