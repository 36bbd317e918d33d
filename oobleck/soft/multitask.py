"""MultitaskPromptTuning: one prompt shared across tasks, then adapted to each (Wang et al. 2023).

Stage one trains PEFT's multitask prompt (a shared prompt times a low-rank matrix per task)
on the rows of every task together; stage two starts each task's own prompt from its source
task (PEFT's ``EXACT_SOURCE_TASK`` init) and adapts it on that task alone. Each predictor gets
its adapted prompt, placed before its whole hard prompt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oobleck._budget import Budget
from oobleck._checkpoint import Checkpoint
from oobleck._estimate import CostEstimate
from oobleck._files import atomic_write
from oobleck._hashing import canonical_json, rows_sha256
from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.lm import _hf_runtime as rt
from oobleck.module import Module
from oobleck.optimize import CompileRun
from oobleck.optimize._base import check_rows
from oobleck.optimize._identity import program_fingerprint
from oobleck.soft import _data, _trainer
from oobleck.soft._base import Metric, SoftPromptOptimizer, _report

__all__ = ["MultitaskPromptTuning", "Task"]


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a multi-task run: a single-predictor program and its data.

    Attributes:
        program: the program (its one trainable predictor must run on a TransformersLM; all
            tasks on the same model).
        trainset: labelled rows.
        valset: rows to choose the adapted prompt on (default: the trainset).
        metric: the task's metric (default: the optimizer's).
    """

    program: Module
    trainset: Sequence[Example]
    valset: Sequence[Example] | None = None
    metric: Metric | None = None


class MultitaskPromptTuning(SoftPromptOptimizer):
    """Multi-task prompt tuning.

    Args:
        metric: the default metric of the tasks.
        num_ranks: rank of the task-specific matrices.
        adapt_steps: stage-two steps per task (default: ``steps // 2``).
        **options: see :class:`~oobleck.soft._base.SoftPromptOptimizer` (``steps`` is stage one;
            ``max_time_s`` applies to each stage).

    ``compile_tasks({"sst2": Task(...), "trec": Task(...)})`` returns one adapted program per
    task; ``compile(program, trainset=...)`` is the single-task case. With ``checkpoint=``,
    both stages resume where they stopped: a finished stage is not trained again, and more
    ``steps`` or ``adapt_steps`` continue the same run (adaptations of a shared prompt that was
    trained further start over).
    """

    method = "multitask_prompt_tuning"
    default_lr = 1e-2
    _budget_settings = (*SoftPromptOptimizer._budget_settings, "adapt_steps")

    def __init__(self, *, metric: Metric, num_ranks: int = 1, adapt_steps: int | None = None, **options: Any) -> None:
        super().__init__(metric=metric, **options)
        if num_ranks < 1 or (adapt_steps is not None and adapt_steps < 0):
            raise ConfigError(f"num_ranks must be >= 1 and adapt_steps >= 0; got {num_ranks} and {adapt_steps}")
        self.num_ranks = num_ranks
        self.adapt_steps = adapt_steps if adapt_steps is not None else max(1, self.steps // 2)

    def _method_settings(self) -> dict[str, Any]:
        return {"num_ranks": self.num_ranks, "adapt_steps": self.adapt_steps}

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        rows = len(valset or trainset)
        shared, adapt = self._evaluations(self.steps) * rows, self._evaluations(self.adapt_steps) * rows
        return CostEstimate(
            program_runs=shared + adapt,
            lm_calls=shared + adapt,
            min_lm_calls=0,
            prompt_tokens=0,
            breakdown={"valset scoring (shared prompt)": shared, "valset scoring (adaptation)": adapt},
        )

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        return self._compile_tasks({"task": Task(program, trainset, valset)}, run)["task"]

    def compile_tasks(
        self, tasks: Mapping[str, Task], *, seed: int = 0, checkpoint: str | os.PathLike[str] | None = None
    ) -> dict[str, Module]:
        """Train one shared prompt on every task, adapt it to each; return the adapted programs.

        Args:
            tasks: the tasks by name (their order is the order of the task ids).
            seed: the only source of randomness.
            checkpoint: a path to save progress to and resume from (side files are written
                next to it, one per stage).

        Raises:
            ConfigError: fewer than one task, tasks on different models, unlabelled rows, a
                checkpoint of another run.
        """
        if not tasks:
            raise ConfigError("compile_tasks needs at least one Task")
        checked = {
            name: Task(
                t.program,
                check_rows(t.trainset, f"{name}.trainset"),
                None if t.valset is None else check_rows(t.valset, f"{name}.valset"),
                t.metric,
            )
            for name, t in tasks.items()
        }
        fingerprint = {
            "optimizer": self.name,
            "settings": {k: v for k, v in self.settings().items() if k not in self._budget_settings},
            "seed": seed,
            # a list, not a mapping: the order of the tasks is their task ids
            "tasks": [
                [name, rows_sha256(t.trainset), rows_sha256(t.valset), canonical_json(program_fingerprint(t.program))]
                for name, t in checked.items()
            ],
        }
        run = CompileRun(seed=seed, budget=Budget(), checkpoint=Checkpoint(checkpoint, fingerprint), state={})
        compiled = self._compile_tasks(checked, run)
        for name, program in compiled.items():
            program.provenance = {
                "optimizer": self.name,
                "settings": self.settings(),
                "seed": seed,
                "task": name,
                "tasks": sorted(tasks),
                "scores": run.scores.get(name, {}),
                # the shared stage's report (the same for every task)
                "source_scores": run.scores.get("source", {}),
            }
        return compiled

    def _compile_tasks(self, tasks: Mapping[str, Task], run: CompileRun) -> dict[str, Module]:
        names = list(tasks)
        programs = {name: tasks[name].program.copy() for name in names}
        targets = {}
        for name in names:
            if not tasks[name].trainset:
                raise ConfigError(f"task {name!r}: its trainset is empty; multi-task prompt tuning needs labelled rows")
            chosen = self.targets(programs[name], tasks[name].trainset)
            if len(chosen) != 1:
                raise ConfigError(
                    f"task {name!r}: multi-task prompt tuning trains one predictor per task; "
                    f"its program has {len(chosen)} trainable ones (pass predictors=[...])"
                )
            targets[name] = chosen[0]
            _data.check_labels(chosen[0][1], tasks[name].trainset, f"{name}.trainset")
            _data.check_labels(chosen[0][1], tasks[name].valset or [], f"{name}.valset")
        lms = {name: _data.transformers_lm(p.resolve_lm(), f"task {name!r}") for name, (_, p) in targets.items()}
        lm = next(iter(lms.values()))
        if any(other.identity != lm.identity for other in lms.values()):
            raise ConfigError("every task of a multi-task run must use the same TransformersLM model")
        rows = [
            row
            for i, name in enumerate(names)
            for row in _data.rows(targets[name][1], lm, list(tasks[name].trainset), cover=None, task=i)
        ]
        source_config = {
            "num_virtual_tokens": self.num_virtual_tokens,
            "num_tasks": len(names),
            "num_ranks": self.num_ranks,
        }
        first = names[0]
        shared = self._train_one(
            programs[first],
            targets[first][0],
            targets[first][1],
            lm,
            list(tasks[first].trainset),
            self._selection(tasks[first]),
            run,
            config=source_config,
            rows=rows,
            tag=".source",
        )
        scores: dict[str, Any] = {"source": _report(shared)}
        blob = rt.tensors_bytes(_trainer.trainable_state(shared.best))
        with tempfile.TemporaryDirectory(prefix="oobleck-mpt-") as tmp:
            source = Path(tmp) / "source.safetensors"
            atomic_write(source, blob)
            for i, name in enumerate(names):
                pname, predictor = targets[name]
                config = {
                    "num_virtual_tokens": self.num_virtual_tokens,
                    "num_tasks": 1,
                    "num_ranks": self.num_ranks,
                    "source": str(source),
                    "source_sha256": hashlib.sha256(blob).hexdigest(),
                    "source_task": i,
                }
                adapter = _Adapt(self, self.adapt_steps, tasks[name].metric or self.metric)
                outcome = adapter._train_one(
                    programs[name],
                    pname,
                    predictor,
                    lm,
                    list(tasks[name].trainset),
                    self._selection(tasks[name]),
                    run,
                    config=config,
                    rows=_data.rows(predictor, lm, list(tasks[name].trainset), cover=None),
                    tag=f".adapt{i}",
                    restart_stale=True,
                )
                predictor.soft_prompt = outcome.best.model_copy(update={"config": _portable(outcome.best.config)})
                scores[name] = _report(outcome)
        run.scores = {**scores, "valset": None}
        return programs

    @staticmethod
    def _selection(task: Task) -> list[Example]:
        return list(task.valset or task.trainset)


class _Adapt(MultitaskPromptTuning):
    """Stage two: the same settings with the adaptation's step count and the task's metric."""

    def __init__(self, parent: MultitaskPromptTuning, steps: int, metric: Metric) -> None:
        self.__dict__.update(parent.__dict__)
        self.steps = steps
        self.metric = metric


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    # The adapted prompt's own state is complete: training it further needs no source file.
    return {k: v for k, v in config.items() if k not in ("source", "source_sha256", "source_task")}
