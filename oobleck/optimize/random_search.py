"""RandomSearch: score several few-shot candidates on held-out rows and keep the best.

Candidates, in order: no demos (id -3), labelled rows only (-2), a bootstrap over the trainset
in order (-1), then ``num_candidates`` bootstraps over seeded shuffles with a random number of
bootstrapped demos (0, 1, ...). Teacher runs are shared between candidates: each (row, round)
is run once, however many candidates need it.

Candidates are scored on the valset, never on the trainset unless you pass
``valset=trainset`` yourself. Without a valset, the trainset is split (seeded) into rows to
bootstrap from and rows to score on, and a warning says so.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Callable
from typing import Any

from oobleck.errors import BudgetExceededError, ConfigError
from oobleck.evaluate import TooManyErrorsError, evaluate
from oobleck.example import Example
from oobleck.metrics import metric_name
from oobleck.module import Module
from oobleck.optimize._base import CompileRun, Optimizer
from oobleck.optimize._budget import (
    CostEstimate,
    calls_per_run,
    canonical_json,
    example_data,
    rows_sha256,
    tokens_per_run,
)
from oobleck.optimize.bootstrap import BootstrapFewShot, Bootstrapper, assemble

__all__ = ["RandomSearch"]

log = logging.getLogger("oobleck.optimize")

_KINDS = {-3: "zero_shot", -2: "labeled", -1: "bootstrap"}


class RandomSearch(Optimizer):
    """Bootstrap several demo sets and keep the one that scores best on the valset.

    Args:
        metric: ``fn(example, prediction, trace=None) -> float | bool``.
        num_candidates: shuffled bootstrap candidates, besides the three fixed ones.
        max_bootstrapped_demos: the most bootstrapped rows per predictor.
        max_labeled_demos: total demos per predictor after labelled padding.
        max_rounds: bootstrap rounds (see :class:`BootstrapFewShot`).
        teacher: a program with the same predictor names (default: the program itself, shown
            ``teacher_shots`` labelled rows).
        teacher_shots: labelled rows the default teacher sees (default: ``max_labeled_demos``).
        metric_threshold: a teacher run passes at this score (default: truthy score).
        max_errors: failed runs tolerated while bootstrapping, and per candidate evaluation.
        round_temperature: temperature for bootstrap rounds after the first.
        num_threads: threads for scoring candidates.
        stop_at_score: stop searching once a candidate scores at least this (percent).
        val_fraction: without a valset, the share of the trainset held out for scoring.
        max_lm_calls: stop cleanly at this many LM calls (see :class:`Optimizer`).
        max_tokens: stop cleanly at this many tokens.

    Example:
        >>> from oobleck import Example, FakeLM, Predict
        >>> from oobleck.metrics import exact_match
        >>> rows = [Example(q=str(i), a="0").with_inputs("q") for i in range(6)]
        >>> lm = FakeLM([{"a": "0"}], cycle=True)
        >>> opt = RandomSearch(exact_match, num_candidates=2, max_labeled_demos=2)
        >>> best = opt.compile(Predict("q -> a", lm=lm), trainset=rows[:4], valset=rows[4:])
        >>> [c["kind"] for c in best.provenance["scores"]["candidates"]]
        ['zero_shot', 'labeled', 'bootstrap', 'bootstrap_shuffled', 'bootstrap_shuffled']
    """

    def __init__(
        self,
        metric: Callable[..., float | bool],
        *,
        num_candidates: int = 8,
        max_bootstrapped_demos: int = 4,
        max_labeled_demos: int = 16,
        max_rounds: int = 1,
        teacher: Module | None = None,
        teacher_shots: int | None = None,
        metric_threshold: float | None = None,
        max_errors: int | None = 10,
        round_temperature: float | None = 1.0,
        num_threads: int = 1,
        stop_at_score: float | None = None,
        val_fraction: float = 0.5,
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__(max_lm_calls=max_lm_calls, max_tokens=max_tokens)
        if num_candidates < 0:
            raise ConfigError(f"num_candidates must be >= 0, got {num_candidates}")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        self.metric = metric
        self.num_candidates = num_candidates
        self.num_threads = num_threads
        self.stop_at_score = stop_at_score
        self.val_fraction = val_fraction
        self._bootstrap = BootstrapFewShot(
            metric,
            max_bootstrapped_demos=max_bootstrapped_demos,
            max_labeled_demos=max_labeled_demos,
            max_rounds=max_rounds,
            teacher=teacher,
            teacher_shots=teacher_shots,
            metric_threshold=metric_threshold,
            max_errors=max_errors,
            round_temperature=round_temperature,
        )

    @property
    def max_errors(self) -> int | None:
        """Failed runs tolerated while bootstrapping and per candidate evaluation."""
        return self._bootstrap.max_errors

    def _settings(self) -> dict[str, Any]:
        inner = self._bootstrap._settings()
        return {
            **inner,
            "metric": metric_name(self.metric),
            "num_candidates": self.num_candidates,
            "num_threads": self.num_threads,
            "stop_at_score": self.stop_at_score,
            "val_fraction": self.val_fraction,
        }

    # ---- data ----

    def _split(
        self, trainset: list[Example], valset: list[Example] | None, seed: int, *, quiet: bool = False
    ) -> tuple[list[Example], list[Example], dict[str, Any]]:
        if valset is not None:
            if valset is trainset or rows_sha256(valset) == rows_sha256(trainset):
                log.info("RandomSearch: scoring on the trainset, as asked (valset=trainset)")
                return trainset, valset, {"valset": "trainset (explicit)"}
            train_keys = {canonical_json(example_data(r)) for r in trainset}
            overlap = sum(1 for r in valset if canonical_json(example_data(r)) in train_keys)
            if overlap and not quiet:
                warnings.warn(
                    f"RandomSearch: {overlap} of {len(valset)} valset rows also appear in the trainset; "
                    "their scores will be inflated by demos of the same rows",
                    stacklevel=4,
                )
            return trainset, valset, {"valset": "given", "overlap_with_trainset": overlap}
        if len(trainset) < 2:
            raise ConfigError("RandomSearch needs a valset, or a trainset of at least 2 rows to split")
        indices = list(range(len(trainset)))
        random.Random(f"oobleck-split:{seed}").shuffle(indices)
        n_val = min(max(1, round(len(trainset) * self.val_fraction)), len(trainset) - 1)
        val_idx, train_idx = sorted(indices[:n_val]), sorted(indices[n_val:])
        if not quiet:
            warnings.warn(
                f"RandomSearch: no valset given; scoring candidates on {n_val} of the {len(trainset)} trainset rows "
                f"(a seeded split, seed={seed}) and bootstrapping from the other {len(train_idx)}. "
                "Pass valset= to choose the rows yourself.",
                stacklevel=4,
            )
        train = [trainset[i] for i in train_idx]
        val = [trainset[i] for i in val_idx]
        return train, val, {"valset": "split from trainset", "valset_rows": val_idx}

    # ---- cost ----

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        if valset is None and len(trainset) >= 2:
            n_val = min(max(1, round(len(trainset) * self.val_fraction)), len(trainset) - 1)
            n_train = len(trainset) - n_val
        else:
            n_val, n_train = len(valset or trainset), len(trainset)
        first = trainset[0] if trainset else None
        per_run = calls_per_run(program, first)
        b = self._bootstrap
        boot_runs = n_train * b.max_rounds if b.max_bootstrapped_demos else 0
        val_runs = (self.num_candidates + 3) * n_val
        runs = boot_runs + val_runs
        return CostEstimate(
            program_runs=runs,
            lm_calls=runs * per_run,
            min_lm_calls=(min(b.max_bootstrapped_demos, n_train) + n_val) * per_run,
            prompt_tokens=runs * tokens_per_run(program, first),
            breakdown={"bootstrap": boot_runs, "validation": val_runs},
        )

    # ---- search ----

    def _candidate(
        self, cid: int, program: Module, train: list[Example], boot: Bootstrapper, seed: int
    ) -> tuple[Module, dict[str, Any], bool]:
        """Build candidate ``cid``; the third item is True when the budget stopped its bootstrap."""
        b = self._bootstrap
        rng = random.Random(f"oobleck-candidate:{seed}:{cid}")
        info: dict[str, Any] = {"id": cid, "kind": _KINDS.get(cid, "bootstrap_shuffled")}
        if cid == -3:
            compiled = program.copy()
            for p in compiled.predictors():
                p.demos = []
            return compiled, info, False
        order = list(range(len(train)))
        if cid == -2:
            compiled = assemble(
                program, train, order, [], {}, max_bootstrapped_demos=0, max_labeled_demos=b.max_labeled_demos, rng=rng
            )
            return compiled, info, False
        max_demos = b.max_bootstrapped_demos
        if cid >= 0:
            rng.shuffle(order)
            max_demos = rng.randint(1, max_demos) if max_demos else 0
        chosen, demos, stopped = boot.collect(train, order, max_demos=max_demos, max_rounds=b.max_rounds)
        compiled = assemble(
            program,
            train,
            order,
            chosen,
            demos,
            max_bootstrapped_demos=max_demos,
            max_labeled_demos=b.max_labeled_demos,
            rng=rng,
        )
        info["bootstrapped_rows"] = list(chosen)
        return compiled, info, stopped

    def _compile(self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun) -> Module:
        train, val, split = self._split(trainset, valset, run.seed, quiet=bool(run.state))
        run.notes = {"split": split, "bootstrap_trainset_sha256": rows_sha256(train), "scored_valset_sha256": rows_sha256(val)}
        boot = self._bootstrap.make_bootstrapper(program, run, train)
        done: dict[str, dict[str, Any]] = dict(run.state.get("candidates", {}))

        def save() -> None:
            run.save({"runs": {k: v.to_data() for k, v in boot.runs.items()}, "candidates": done})

        boot.on_run = save
        best_id: int | None = None
        best_score = float("-inf")
        stopped = False
        last_failure: Exception | None = None
        for cid in range(-3, self.num_candidates):
            info = done.get(str(cid))
            if info is None:
                candidate, info, stopped = self._candidate(cid, program, train, boot, run.seed)
                if stopped:
                    break
                try:
                    result = evaluate(
                        candidate, val, self.metric, num_threads=self.num_threads, progress=False, max_errors=self.max_errors
                    )
                except BudgetExceededError:
                    stopped = True
                    break
                except TooManyErrorsError as exc:
                    log.warning("RandomSearch: candidate %d failed to evaluate: %s", cid, exc)
                    last_failure = exc
                    info = {**info, "score": None, "error": str(exc)}
                else:
                    info = {**info, "score": result.score, "errors": result.errors}
                done[str(cid)] = info
                save()
                log.info("RandomSearch: candidate %d (%s) scored %s", cid, info["kind"], info["score"])
            score = info.get("score")
            if score is not None and score > best_score:
                best_id, best_score = cid, score
            if self.stop_at_score is not None and score is not None and score >= self.stop_at_score:
                break
        save()  # also records what a candidate interrupted mid-evaluation spent
        run.scores = {
            "candidates": [done[k] for k in sorted(done, key=int)],
            "best": best_id,
            "best_score": None if best_id is None else best_score,
        }
        if best_id is None:
            if last_failure is not None and not stopped:
                raise last_failure
            log.warning("RandomSearch: no candidate was scored before the budget ran out; returning the program unchanged")
            return program.copy()
        best, _, _ = self._candidate(best_id, program, train, boot, run.seed)
        if stopped:
            run.budget.stopped = True
        return best
