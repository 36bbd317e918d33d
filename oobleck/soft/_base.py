"""SoftPromptOptimizer: the frame shared by prompt tuning, prefix tuning, P-tuning and MPT.

It is an :class:`~oobleck.optimize.Optimizer` like the hard-prompt ones: ``compile(program,
trainset=..., valset=...)`` returns a copy whose predictors carry a trained
:class:`~oobleck.lm.soft_prompt.SoftPrompt`, with provenance. Each predictor that runs on a
TransformersLM and whose fields the trainset rows carry gets its own soft prompt; the metric
on the valset (the trainset when there is none) picks the checkpoint. A predictor that
already has a soft prompt of the same method is trained further from it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from oobleck.errors import ConfigError
from oobleck.evaluation import evaluate
from oobleck.example import Example
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.module import Module
from oobleck.optimize import CompileRun, CostEstimate, Optimizer
from oobleck.predict import Predict
from oobleck.soft import _data, _trainer
from oobleck.soft._data import Cover

Metric = Callable[..., Any]

#: The most virtual tokens a SoftPrompt records (its num_virtual_tokens field's bound).
_MAX_VIRTUAL_TOKENS = 100_000


class SoftPromptOptimizer(Optimizer):
    """Base class of the soft-prompt optimizers (see the subclasses for the methods).

    Args:
        metric: ``metric(example, prediction) -> float | bool``; chooses the checkpoint kept.
        steps: training steps per predictor (the step budget).
        max_time_s: stop training a predictor after this many seconds of training (the time
            budget; evaluations count, the first one does not). The report says whether it did
            (``stopped_by_time``, ``steps`` of ``planned_steps``).
        batch_size: training rows per step.
        lr: AdamW learning rate (default: the method's).
        eval_every: score on the valset every this many steps (default: 4 times per run).
        num_virtual_tokens: how many virtual tokens.
        predictors: names of the predictors to train (default: every one that can be).
        num_threads: threads for the valset evaluations (TransformersLM batches them).
        progress: show a bar of training steps (loss, best score) on a terminal; off also when
            ``compile(progress=False)``.
    """

    method: ClassVar[str] = ""
    default_lr: ClassVar[float] = 1e-2
    _budget_settings: tuple[str, ...] = ("max_lm_calls", "max_tokens", "steps", "max_time_s")

    def __init__(
        self,
        *,
        metric: Metric,
        steps: int = 50,
        max_time_s: float | None = None,
        batch_size: int = 4,
        lr: float | None = None,
        eval_every: int | None = None,
        num_virtual_tokens: int = 20,
        predictors: Sequence[str] | None = None,
        num_threads: int = 8,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if steps < 0 or batch_size < 1 or not 1 <= num_virtual_tokens <= _MAX_VIRTUAL_TOKENS:
            raise ConfigError(
                f"steps must be >= 0, batch_size >= 1 and num_virtual_tokens from 1 to {_MAX_VIRTUAL_TOKENS}; "
                f"got steps={steps}, "
                f"batch_size={batch_size}, num_virtual_tokens={num_virtual_tokens}"
            )
        if (lr is not None and not 0 < lr < math.inf) or (eval_every is not None and eval_every < 1):
            raise ConfigError(
                f"lr must be > 0 and finite, and eval_every >= 1 (or None); got lr={lr}, eval_every={eval_every}"
            )
        if max_time_s is not None and not max_time_s >= 0:
            raise ConfigError(f"max_time_s must be >= 0 seconds (or None for no time budget); got {max_time_s}")
        if not callable(metric):
            raise ConfigError("metric must be a function metric(example, prediction) -> float")
        self.metric = metric
        self.steps = steps
        self.max_time_s = max_time_s
        self.batch_size = batch_size
        self.lr = lr if lr is not None else self.default_lr
        self.eval_every = eval_every
        self.num_virtual_tokens = num_virtual_tokens
        self.predictor_names = list(predictors) if predictors is not None else None
        self.num_threads = num_threads
        self.progress = progress

    # ---- what subclasses provide ----

    def _method_settings(self) -> dict[str, Any]:
        """The method's own options (JSON), besides num_virtual_tokens."""
        return {}

    def _cover(self, predictor: Predict, lm: Any, trainset: list[Example]) -> Cover | None:
        """The hard-prompt messages this method's soft prompt replaces (none by default)."""
        return None

    # ---- the frame ----

    def _settings(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "steps": self.steps,
            "max_time_s": self.max_time_s,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "eval_every": self.eval_every,
            "num_virtual_tokens": self.num_virtual_tokens,
            "predictors": self.predictor_names,
            **self._method_settings(),
        }

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        evals = self._evaluations(self.steps) * len(valset or trainset)
        return CostEstimate(
            program_runs=evals, lm_calls=evals, min_lm_calls=0, prompt_tokens=0, breakdown={"valset scoring": evals}
        )

    def _evaluations(self, steps: int) -> int:
        """How many valset evaluations a run of ``steps`` makes at most (the first, the last, every eval_every)."""
        return steps // (self.eval_every or max(1, steps // 4)) + 2

    def _eval_every(self) -> int:
        return self.eval_every or max(1, self.steps // 4)

    def targets(self, program: Module, trainset: Sequence[Example]) -> list[tuple[str, Predict]]:
        """The predictors this optimizer trains in ``program``."""
        if not trainset:
            raise ConfigError("the trainset is empty: soft-prompt training needs labelled rows")
        chosen = []
        for name, predictor in program.named_predictors():
            if self.predictor_names is not None:
                if name in self.predictor_names:
                    chosen.append((name, predictor))
                continue
            if any(_data.fits(predictor, ex) for ex in trainset):
                chosen.append((name, predictor))
        if self.predictor_names is not None:
            missing = sorted(set(self.predictor_names) - {n for n, _ in chosen})
            if missing:
                raise ConfigError(
                    f"no predictor(s) named {missing}; the program has {[n for n, _ in program.named_predictors()]}"
                )
        if not chosen:
            raise ConfigError("no predictor's fields are all present in the trainset rows; nothing to train")
        return chosen

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        compiled = program.copy()
        selection = valset or trainset
        scores: dict[str, Any] = {}
        for name, predictor in self.targets(compiled, trainset):
            _data.check_labels(predictor, trainset, "trainset")
            if valset:
                _data.check_labels(predictor, valset, "valset")
            lm = _data.transformers_lm(predictor.resolve_lm(), f"predictor {name!r}")
            outcome = self._train_one(compiled, name, predictor, lm, trainset, selection, run)
            predictor.soft_prompt = outcome.best
            scores[name] = _report(outcome)
        run.scores = {"valset": max((s["best_score"] for s in scores.values()), default=None), "predictors": scores}
        return compiled

    def _train_one(
        self,
        program: Module,
        name: str,
        predictor: Predict,
        lm: Any,
        trainset: list[Example],
        selection: list[Example],
        run: CompileRun,
        *,
        config: dict[str, Any] | None = None,
        rows: list[_data.Row] | None = None,
        start: SoftPrompt | None = None,
        task: int = 0,
        tag: str = "",
        restart_stale: bool = False,
    ) -> _trainer.Outcome:
        previous = predictor.soft_prompt if getattr(predictor, "soft_prompt", None) is not None else None
        if start is None and previous is not None and previous.method == self.method:
            start = previous
        cover = None
        if start is not None and start.covers:
            cover = _data.hard_prompt_cover(predictor, lm, next(ex for ex in trainset if _data.fits(predictor, ex)))
            if cover.sha256 != start.covers_sha256:
                raise ConfigError(f"predictor {name!r}: its hard prompt changed since its soft prompt was trained")
        elif start is None:
            cover = self._cover(predictor, lm, trainset)
        if config is not None:
            settings = dict(config)
        elif start is not None:
            settings = dict(start.config)
        else:
            settings = self._plan_config(cover, lm)
        plan = _trainer.Plan(
            self.method, self.steps, self.max_time_s, self.batch_size, self.lr, self._eval_every(), run.seed, settings
        )
        if rows is None:
            rows = _data.rows(predictor, lm, trainset, cover=cover)

        def score(candidate: SoftPrompt) -> float:
            predictor.soft_prompt = candidate
            try:
                return evaluate(program, selection, self.metric, num_threads=self.num_threads, progress=False).score
            finally:
                predictor.soft_prompt = previous

        checkpoint = None
        if run.checkpoint.path is not None:
            checkpoint = Path(f"{run.checkpoint.path}.{_safe(name)}{tag}.soft.json")
        # "source" is a file path that changes between sessions; its content is named by "source_sha256"
        identity = {k: v for k, v in settings.items() if k != "source"}
        fingerprint = hashlib.sha256(
            json.dumps(
                [run.checkpoint.fingerprint, name, tag, identity, start.sha256 if start else None],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        return _trainer.train(
            lm,
            plan,
            rows,
            score=score,
            cover=cover,
            start=start,
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            progress=self.progress and run.progress,
            materialize_task=task,
            restart_stale=restart_stale,
            label=f"{self.method} {name}{tag}",
        )

    def _plan_config(self, cover: Cover | None, lm: Any) -> dict[str, Any]:
        config = {"num_virtual_tokens": self.num_virtual_tokens, **self._method_settings()}
        if cover is not None:
            config.update(init="text", init_text=cover.text, num_virtual_tokens=len(lm.encode(cover.text)))
        return config


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:60]


def _report(outcome: _trainer.Outcome) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return None if math.isnan(x) or math.isinf(x) else round(x, 6)

    return {
        "best_score": num(outcome.best_score),
        "initial_score": num(outcome.initial_score),
        "best_step": outcome.best_step,
        "steps": outcome.steps,
        "planned_steps": outcome.planned_steps,
        # the time budget (max_time_s) ended training before the planned steps
        "stopped_by_time": outcome.stopped_by_time,
        "train_seconds": round(outcome.seconds, 1),
        "trainable_params": outcome.trainable_params,
        "first_loss": outcome.losses[0] if outcome.losses else None,
        "last_loss": outcome.losses[-1] if outcome.losses else None,
        "history": [[s, num(v)] for s, v in outcome.history],
        # the exact vectors training started from (a soft prompt trained further starts from its own)
        "initial_sha256": outcome.initial_sha256 or None,
    }
