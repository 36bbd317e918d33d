"""ReflectiveEvolution: instructions rewritten from the metric's feedback (as GEPA).

Each iteration draws a parent from the per-example Pareto front of the candidates scored so
far (a candidate is on the front when it is best on at least one valset row and no other
candidate is at least as good everywhere; parents are drawn in proportion to the rows they
lead on), runs it on a minibatch of trainset rows under a trace, and shows one predictor's
inputs, outputs and the metric's feedback to a reflection LM that rewrites that predictor's
instruction. The child must beat its parent on that same minibatch before it earns a full
valset evaluation (with paired racing against the incumbent).

A metric may return a number, or a score with feedback (``{"score": 0.0, "feedback": "..."}``
or an object with ``score`` and ``feedback``); without feedback the reflection LM is told what
was expected. Unlike GEPA, a candidate may carry a demo set: with ``demos=True`` a bootstrapped
demo set joins the starting pool, and its descendants keep it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oobleck import _types
from oobleck._estimate import (
    CostEstimate,
    Expected,
    calls_per_run,
    run_shape,
    start_demos,
    tokens_per_run,
)
from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.optimize._base import CompileRun
from oobleck.optimize._bootstrap import assemble
from oobleck.optimize._identity import candidate_key
from oobleck.optimize._instructions import InstructionSearchBase, Session, run_with_feedback, with_instruction
from oobleck.optimize._search import SearchKwargs

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ReflectiveEvolution", "pareto_front"]

log = logging.getLogger("oobleck.optimize")


def pareto_front(scores: Mapping[str, Sequence[float]]) -> dict[str, int]:
    """The per-example Pareto front: each candidate on it with the number of rows it leads on.

    A candidate leads on a row when no candidate scores higher there. Candidates that lead
    nowhere, or that another candidate dominates (at least as good on every row and better on
    one), are left out. Keys keep their input order.

    Example:
        Everyone ties on the last row, so each leads there; ``d`` leads only there and ``a``
        dominates it.

        >>> pareto_front({"a": [1, 0, 0], "b": [0, 1, 0], "c": [0, 1, 0], "d": [0, 0, 0]})
        {'a': 2, 'b': 2, 'c': 2}
    """
    keys = list(scores)
    if not keys:
        return {}
    n = len(scores[keys[0]])
    if any(len(scores[k]) != n for k in keys):
        raise ConfigError("every candidate on the Pareto front needs a score on the same rows")
    leads: dict[str, int] = {k: 0 for k in keys}
    for i in range(n):
        best = max(scores[k][i] for k in keys)
        for k in keys:
            if scores[k][i] == best:
                leads[k] += 1
    front = [k for k in keys if leads[k] > 0]

    def dominates(a: str, b: str) -> bool:
        sa, sb = scores[a], scores[b]
        return all(x >= y for x, y in zip(sa, sb)) and any(x > y for x, y in zip(sa, sb))

    kept = [k for k in front if not any(dominates(o, k) for o in front if o != k)]
    return {k: leads[k] for k in kept}


class ReflectiveEvolution(InstructionSearchBase):
    """Evolve instructions by reflecting on the metric's feedback (see the module docstring).

    Args:
        metric: ``fn(example, prediction, trace=None)`` returning a score, or a score with
            feedback.
        iterations: reflection steps (each: one minibatch run, one reflection call, one
            minibatch check of the child, and a full evaluation when the child is accepted).
        minibatch_size: trainset rows per reflection.
        reflection_lm: the LM that rewrites instructions (default: the task LM).
        grounded_fallback: when the LM writes no usable instruction, score a variant built from
            the signature instead (its answer choices, fields and their descriptions).
        demos: add a bootstrapped demo set to the starting pool (candidates may carry demos).
        max_demos: the demos in that set per predictor.
        formats: prompt format names added to the starting pool.
        **options: the search options (see :class:`~oobleck.optimize._search.SearchOptions`).
            Candidates are scored on the selection rows; ``confirm_fraction`` of the scoring
            rows (at least 10; none with fewer than 20) is held out to state the winner's gain
            on (``provenance["scores"]["verdict"]``).

    Example:
        >>> from oobleck import Example, FakeLM, Predict
        >>> from oobleck.metrics import exact_match
        >>> rows = [Example(q=str(i), a="0").with_inputs("q") for i in range(6)]
        >>> lm = FakeLM(lambda r: {"instruction": "Answer 0.", "a": "0"})
        >>> best = ReflectiveEvolution(exact_match, iterations=2).compile(
        ...     Predict("q -> a", lm=lm), trainset=rows[:3], valset=rows[3:])
        >>> best.provenance["scores"]["best_score"]
        100.0
    """

    cli_name = "reflective"
    prompt_lm_option = "reflection_lm"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        iterations: int = 8,
        minibatch_size: int = 4,
        reflection_lm: LM | None = None,
        grounded_fallback: bool = True,
        demos: bool = False,
        max_demos: int = 4,
        formats: Sequence[str] | None = None,
        **options: Unpack[SearchKwargs],
    ) -> None:
        super().__init__(
            metric,
            prompt_lm=reflection_lm,
            grounded_fallback=grounded_fallback,
            formats=formats,
            n_demos=max_demos if demos else 0,
            **options,
        )
        if iterations < 1 or minibatch_size < 1:
            raise ConfigError(f"iterations and minibatch_size must be >= 1, got {iterations} and {minibatch_size}")
        self.iterations = iterations
        self.minibatch_size = minibatch_size
        self.demos = demos

    def _settings(self) -> dict[str, Any]:
        return {
            **self._instruction_settings(),
            "iterations": self.iterations,
            "minibatch_size": self.minibatch_size,
            "demos": self.demos,
        }

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        n_train, n_val = self._val_size(trainset, valset)
        first = trainset[0] if trainset else None
        per_run = calls_per_run(program, first)
        mb = min(self.minibatch_size, n_train)
        boot = n_train if self.demos else 0
        pool = 1 + len(self.formats) + (1 if self.demos else 0)
        minibatch_runs = 2 * mb * self.iterations
        val_runs = n_val * (pool + self.iterations)
        runs = boot + minibatch_runs + val_runs
        estimate = CostEstimate(
            program_runs=runs,
            lm_calls=runs * per_run + self.iterations,
            min_lm_calls=n_val * per_run,
            prompt_tokens=runs * tokens_per_run(program, first),
            breakdown={
                "bootstrap": boot,
                "minibatch": minibatch_runs,
                "validation": val_runs,
                "reflection_calls": self.iterations,
            },
        )
        # Typically: a parent's minibatch rows were often run before, and about half the
        # children beat their parent on the minibatch and are scored in full.
        expected = Expected(run_shape(program, trainset))
        self._expect_grounding(expected, n_train)
        expected.runs(n_val * (1 + len(self.formats)), start_demos(program), prompts=1 + len(self.formats))
        if self.demos:
            expected.runs(n_val, min(self.n_demos, n_train), prompts=1)
        expected.runs(self.iterations * (1.5 * mb + 0.5 * n_val), start_demos(program), prompts=self.iterations)
        expected.proposer_calls(self.iterations, mb)
        return self._plus_confirmation(
            estimate, program, trainset, valset, expected=expected, best_demos=start_demos(program)
        )

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        pool: list[str] = []

        def steps(s: Session) -> None:
            pool.append(s.score_start())
            s.try_formats()
            pool.extend([k for k in s.programs if k not in pool])
            if self.demos:
                pool.append(self._with_demos(s, program))
            for it in range(self.iterations):
                key = self._step(s, [k for k in pool if self._usable(s, k)], it)
                if key is not None:
                    pool.append(key)

        best, s = self._search(program, trainset, valset, run, steps)
        full = {k: s.scorer.row_scores(k) for k in pool if self._usable(s, k)}
        run.scores["pareto_front"] = {str(s.ids[k]): n for k, n in pareto_front(full).items()}
        return best

    @staticmethod
    def _usable(s: Session, key: str) -> bool:
        return s.scorer.complete(key) and not s.scorer.candidates[key].dropped

    def _with_demos(self, s: Session, program: Module) -> str:
        """The starting program carrying a bootstrapped demo set, fully scored."""
        demos = s.grounding_demos()
        order = list(range(len(s.train)))
        candidate = assemble(
            program,
            s.train,
            order,
            [],
            demos,
            max_bootstrapped_demos=self.n_demos,
            max_labeled_demos=0,
            rng=random.Random(s.seed),
        )
        return s.add(candidate, parent=candidate_key(program), step=0, kind="demos")

    def _feedback(self, s: Session, key: str, name: str, rows: list[int]) -> list[dict[str, Any]]:
        """Feedback records of candidate ``key`` on trainset ``rows`` (kept in the checkpoint)."""
        cache = s.extra_state.setdefault("feedback", {})
        out = []
        for i in rows:
            tag = f"{key}:{name}:{i}"
            if tag not in cache:
                rec = run_with_feedback(s.programs[key], name, s.train[i], self.metric)
                cache[tag] = _types.to_jsonable(rec)
                s.save()
            out.append(cache[tag])
        return out

    def _step(self, s: Session, pool: list[str], it: int) -> str | None:
        """One reflection; the child's key when it was accepted and fully scored."""
        rng = random.Random(f"oobleck-reflect:{s.seed}:{it}")
        front = pareto_front({k: s.scorer.row_scores(k) for k in pool})
        if not front:
            return None
        keys = list(front)
        parent = rng.choices(keys, weights=[front[k] for k in keys])[0]
        names = [n for n, _ in s.start.named_predictors()]
        name = names[it % len(names)]
        rows = rng.sample(range(len(s.train)), min(self.minibatch_size, len(s.train)))
        records = self._feedback(s, parent, name, rows)
        parent_total = sum(float(r["score"]) for r in records)
        if parent_total >= len(records):
            log.info("reflective: iteration %d skipped, the parent is perfect on its minibatch", it)
            return None
        shown = [{k: v for k, v in r.items() if k != "score"} for r in records]
        text = s.reflect(s.programs[parent], name, shown, sample=it, tag=f"reflect:{it}")
        if not text:
            return None
        child = with_instruction(s.programs[parent], name, text)
        key, new = s.record(child, parent=parent, step=it + 1, kind="reflection", predictor=name)
        if not new:
            return None
        child_total = sum(float(r["score"]) for r in self._feedback(s, key, name, rows))
        rec = s.records[s.ids[key]]
        rec["minibatch"] = {"parent": round(parent_total, 4), "child": round(child_total, 4), "rows": len(rows)}
        if child_total <= parent_total:
            rec["accepted"] = False
            return None
        rec["accepted"] = True
        s.score(key)
        return key if self._usable(s, key) else None
