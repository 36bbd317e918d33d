"""The frame shared by the optimizers that search over candidates scored on a valset.

It holds what every searching optimizer does the same way: the trainset/valset split (with the
leakage warning), candidate keys (a hash of everything that changes what is sent), the
:class:`~oobleck.optimize._scoring.Scorer`, the choice of the winner (best mean, or the
shortest prompt within a tolerance), and the verdict against the starting program.
"""

from __future__ import annotations

import hashlib
import logging
import random
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from oobleck._estimate import tokens_per_run
from oobleck._hashing import canonical_json, rows_sha256
from oobleck.errors import BudgetExceededError, ConfigError
from oobleck.example import Example, to_data
from oobleck.metrics import metric_name
from oobleck.module import Module
from oobleck.optimize._base import CompileRun, Optimizer, program_fingerprint
from oobleck.optimize._scoring import Scorer, select, verdict

__all__ = ["SearchOptimizer", "candidate_key"]

log = logging.getLogger("oobleck.optimize")


def candidate_key(program: Module) -> str:
    """A short hash of everything in ``program`` that changes the prompts it sends.

    Two candidates with the same key send the same requests, so they share their scores.
    """
    data = program_fingerprint(program)
    for entry, (_, p) in zip(data, program.named_predictors()):
        adapter = p.adapter
        if adapter is not None:
            options = adapter.options() if hasattr(adapter, "options") else {}
            entry["adapter"] = {"name": adapter.name, "version": adapter.version, "options": options}
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16]


class SearchOptimizer(Optimizer):
    """Base of the optimizers that score candidates on a valset (see the module docstring).

    Args:
        metric: ``fn(example, prediction, trace=None) -> float | bool`` (a score with
            feedback is accepted too; only the score is used here).
        num_threads: threads for scoring candidates.
        max_errors: failed rows tolerated per candidate evaluation.
        racing: stop scoring a candidate once it is confidently worse than the incumbent.
        require_significant: return the starting program unless the winner's paired gain over
            it is significant at 95%.
        prompt_tolerance: when set (points), choose the shortest prompt among the candidates
            scoring within this much of the best.
        val_fraction: without a valset, the share of the trainset held out for scoring.
        max_lm_calls: stop cleanly at this many LM calls (see :class:`Optimizer`).
        max_tokens: stop cleanly at this many tokens.
    """

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        num_threads: int = 1,
        max_errors: int | None = 10,
        racing: bool = True,
        require_significant: bool = False,
        prompt_tolerance: float | None = None,
        val_fraction: float = 0.5,
        max_lm_calls: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__(max_lm_calls=max_lm_calls, max_tokens=max_tokens)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        if prompt_tolerance is not None and prompt_tolerance < 0:
            raise ConfigError(f"prompt_tolerance must be >= 0 points, got {prompt_tolerance}")
        self.metric = metric
        self.num_threads = num_threads
        self.search_max_errors = max_errors
        self.racing = racing
        self.require_significant = require_significant
        self.prompt_tolerance = prompt_tolerance
        self.val_fraction = val_fraction

    def _search_settings(self) -> dict[str, Any]:
        return {
            "metric": metric_name(self.metric),
            "num_threads": self.num_threads,
            "racing": self.racing,
            "require_significant": self.require_significant,
            "prompt_tolerance": self.prompt_tolerance,
            "val_fraction": self.val_fraction,
        }

    # ---- data ----

    def _val_size(self, trainset: list[Example], valset: list[Example] | None) -> tuple[int, int]:
        """(rows to learn from, rows to score on), as :meth:`_split` will make them."""
        if valset is None and len(trainset) >= 2:
            n_val = min(max(1, round(len(trainset) * self.val_fraction)), len(trainset) - 1)
            return len(trainset) - n_val, n_val
        return len(trainset), len(valset or trainset)

    def _split(
        self, trainset: list[Example], valset: list[Example] | None, seed: int, *, quiet: bool = False
    ) -> tuple[list[Example], list[Example], dict[str, Any]]:
        if valset is not None:
            if valset is trainset or rows_sha256(valset) == rows_sha256(trainset):
                log.info("%s: scoring on the trainset, as asked (valset=trainset)", self.name)
                return trainset, valset, {"valset": "trainset (explicit)"}
            train_keys = {canonical_json(to_data(r)) for r in trainset}
            overlap = sum(1 for r in valset if canonical_json(to_data(r)) in train_keys)
            if overlap and not quiet:
                warnings.warn(
                    f"{self.name}: {overlap} of {len(valset)} valset rows also appear in the trainset; "
                    "their scores will be inflated by demos of the same rows",
                    stacklevel=4,
                )
            return trainset, valset, {"valset": "given", "overlap_with_trainset": overlap}
        if len(trainset) < 2:
            raise ConfigError(f"{self.name} needs a valset, or a trainset of at least 2 rows to split")
        indices = list(range(len(trainset)))
        random.Random(f"oobleck-split:{seed}").shuffle(indices)
        n_val = self._val_size(trainset, None)[1]
        val_idx, train_idx = sorted(indices[:n_val]), sorted(indices[n_val:])
        if not quiet:
            warnings.warn(
                f"{self.name}: no valset given; scoring candidates on {n_val} of the {len(trainset)} trainset rows "
                f"(a seeded split, seed={seed}) and bootstrapping from the other {len(train_idx)}. "
                "Pass valset= to choose the rows yourself.",
                stacklevel=4,
            )
        train = [trainset[i] for i in train_idx]
        val = [trainset[i] for i in val_idx]
        return train, val, {"valset": "split from trainset", "valset_rows": val_idx}

    def _scorer(self, val: list[Example], run: CompileRun) -> Scorer:
        return Scorer(
            val,
            self.metric,
            num_threads=self.num_threads,
            max_errors=self.search_max_errors,
            racing=self.racing,
            state=run.state.get("scorer"),
        )

    # ---- the end of a search ----

    def _finish(
        self,
        run: CompileRun,
        scorer: Scorer,
        program: Module,
        candidates: Mapping[str, Module],
        *,
        stopped: bool,
    ) -> Module:
        """Choose the winner among the fully scored ``candidates`` and state the verdict.

        ``candidates`` maps scorer keys to programs, the starting program included. Records
        ``best``, ``verdict`` and ``racing`` in ``run.scores``; returns the starting program
        (a copy) when nothing was fully scored, or when ``require_significant`` and the gain
        is not significant.
        """
        start_key = candidate_key(program)
        full = {k: scorer.candidates[k].mean() for k in candidates if scorer.complete(k) and not scorer.candidates[k].dropped}
        run.scores["racing"] = scorer.racing_report()
        if stopped:
            run.budget.stopped = True
        if not full:
            log.warning("%s: no candidate was fully scored before the budget ran out; returning the program unchanged", self.name)
            run.scores["best"] = None
            return program.copy()
        first = scorer.valset[0]
        lengths = {k: tokens_per_run(candidates[k], first) for k in full}
        best_key = select(full, lengths, tolerance=self.prompt_tolerance)
        run.scores["best"] = best_key
        run.scores["best_score"] = full[best_key]
        run.scores["best_prompt_tokens"] = lengths[best_key]
        if scorer.complete(start_key):
            v = verdict(scorer.row_scores(start_key), scorer.row_scores(best_key))
            run.scores["start_score"] = scorer.candidates[start_key].mean()
            run.scores["verdict"] = v.to_dict()
            log.info("%s: gain over the starting program %s", self.name, v)
            if self.require_significant and not v.significant:
                log.warning("%s: the gain %s is not significant; returning the starting program", self.name, v)
                run.scores["returned"] = "start (gain not significant)"
                return program.copy()
        else:
            run.scores["verdict"] = None
        return candidates[best_key].copy()

    def _score_start(self, scorer: Scorer, program: Module) -> bool:
        """Score the starting program in full (never raced); False when the budget ran out."""
        try:
            scorer.score(candidate_key(program), program, race=False)
        except BudgetExceededError:
            return False
        return True
