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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oobleck import _types
from oobleck.context import context
from oobleck.errors import BudgetExceededError, ConfigError
from oobleck.evaluate import TooManyErrorsError
from oobleck.example import Example, Prediction
from oobleck.metrics import metric_name
from oobleck.module import Module
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.optimize._budget import CostEstimate, calls_per_run, tokens_per_run
from oobleck.trace import trace

__all__ = ["BootstrapFewShot"]

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
            "demos": {
                name: [{"fields": _types.to_jsonable(d.to_dict()), "inputs": list(d.input_keys or ())} for d in ds]
                for name, ds in self.demos.items()
            },
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TeacherRun:
        """Rebuild from :meth:`to_data`."""
        demos = {
            name: [Example(d["fields"]).with_inputs(*d["inputs"]) for d in ds] for name, ds in data["demos"].items()
        }
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
        metric: Callable[..., float | bool],
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
        from oobleck.optimize import _budget

        budget = _budget.active()
        if budget is not None:
            budget.check()
        teacher = self._teacher_for(ex, rnd)
        names = {id(p): n for n, p in teacher.named_predictors()}
        outcome: TeacherRun
        with context(sample_index=rnd), trace() as t:
            try:
                out = teacher(**ex.inputs())
                pred = out if isinstance(out, Prediction) else Prediction(out)
                score = float(self.metric(ex, pred, list(t.entries)))
            except (ConfigError, BudgetExceededError):
                raise
            except Exception as exc:  # counted; too many raise below
                outcome = TeacherRun(passed=False, demos={}, error=f"{type(exc).__name__}: {exc}")
                log.debug("bootstrap: row %d round %d failed: %r", index, rnd, exc)
            else:
                passed = bool(score) if self.metric_threshold is None else score >= self.metric_threshold
                demos: dict[str, list[Example]] = {}
                if passed:
                    for entry in t.entries:
                        name = names.get(id(entry.predictor))
                        if name is None or entry.outputs is None:
                            continue
                        demo = Example({**entry.inputs, **entry.outputs}).with_inputs(*entry.inputs)
                        demos.setdefault(name, []).append(demo)
                outcome = TeacherRun(passed=passed, demos=demos, score=score)
        if budget is not None:
            budget.charge(t.usage)
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
        for cap in ([share, max_demos] if balanced else [max_demos]):
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
    """Set every predictor's demos on a copy of ``student``: bootstrapped first, labelled rows after."""
    compiled = student.copy()
    unused = [trainset[i] for i in order if i not in set(chosen)]
    for name, predictor in compiled.named_predictors():
        boot = list(demos.get(name, []))[:max_bootstrapped_demos]
        n_pad = min(max(max_labeled_demos - len(boot), 0), len(unused))
        predictor.demos = boot + rng.sample(unused, n_pad)
    return compiled


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
        return CostEstimate(
            program_runs=runs,
            lm_calls=runs * per_run,
            min_lm_calls=fewest * per_run,
            prompt_tokens=runs * tokens_per_run(program, first),
            breakdown={"bootstrap": runs},
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
                p.demos = list(rows)
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

    def _compile(self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun) -> Module:
        boot = self.make_bootstrapper(program, run, trainset)
        boot.on_run = lambda: run.save({"runs": {k: v.to_data() for k, v in boot.runs.items()}})
        order = list(range(len(trainset)))
        chosen, demos, stopped = boot.collect(
            trainset, order, max_demos=self.max_bootstrapped_demos, max_rounds=self.max_rounds
        )
        compiled = assemble(
            program,
            trainset,
            order,
            chosen,
            demos,
            max_bootstrapped_demos=self.max_bootstrapped_demos,
            max_labeled_demos=self.max_labeled_demos,
            rng=random.Random(run.seed),
        )
        run.scores = {
            "bootstrapped_rows": list(chosen),
            "teacher_runs": len(boot.runs),
            "teacher_passed": sum(1 for r in boot.runs.values() if r.passed),
            "teacher_errors": boot.errors,
        }
        if stopped:
            log.info("bootstrap stopped at the budget after %d teacher runs", len(boot.runs))
        return compiled
