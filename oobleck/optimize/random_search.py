"""RandomSearch: score several few-shot candidates on held-out rows and keep the best.

Candidates, in order: no demos (id -3), labelled rows only (-2), a bootstrap over the trainset
in order (-1), then ``num_candidates`` bootstraps over seeded shuffles with a random number of
bootstrapped demos (0, 1, ...). Teacher runs are shared between candidates: each (row, round)
is run once, however many candidates need it.

Candidates are scored on the valset, never on the trainset unless you pass
``valset=trainset`` yourself. Without a valset, the trainset is split (seeded) into rows to
bootstrap from and rows to score on, and a warning says so. Of the rows scored on,
``confirm_fraction`` (30%, at least 10 rows; none with fewer than 20) is held out: the winner
is chosen on the rest, and its gain over the starting program is stated on the held-out rows
(``provenance["scores"]["verdict"]``; see :mod:`oobleck.optimize._search`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from oobleck._estimate import (
    CostEstimate,
    Expected,
    bootstrap_runs,
    calls_per_run,
    run_shape,
    start_demos,
    tokens_per_run,
)
from oobleck._hashing import rows_sha256
from oobleck.errors import BudgetExceededError, ConfigError, TooManyErrorsError
from oobleck.example import Example
from oobleck.module import Module
from oobleck.optimize._base import CompileRun
from oobleck.optimize._bootstrap import Bootstrapper, DemoSetKind, demo_set
from oobleck.optimize._identity import candidate_key
from oobleck.optimize._search import SearchOptimizer, SearchOptions
from oobleck.optimize.bootstrap import BootstrapFewShot

__all__ = ["RandomSearch"]

log = logging.getLogger("oobleck.optimize")

_KINDS: dict[int, DemoSetKind] = {-3: "zero_shot", -2: "labeled", -1: "bootstrap"}


class RandomSearch(SearchOptimizer):
    """Bootstrap several demo sets and keep the one that scores best on the valset.

    Args:
        metric: ``fn(example, prediction, trace=None) -> float | bool``.
        num_candidates: shuffled bootstrap candidates, besides the three fixed ones.
        stop_at_score: stop searching once a candidate scores at least this (percent).
        **options: the search options (``num_threads``, ``max_errors``, ``racing``,
            ``require_significant``, ``prompt_tolerance``, ``val_fraction``, ``confirm_fraction``,
            ``max_lm_calls``, ``max_tokens``; see :class:`~oobleck.optimize._search.SearchOptions`), where
            ``racing`` defaults to False and ``max_errors`` also bounds the failed teacher
            runs; and how each candidate bootstraps, as for :class:`BootstrapFewShot`:
            ``max_bootstrapped_demos`` (the most per candidate; shuffled candidates draw a
            random number up to it), ``max_labeled_demos``, ``max_rounds``, ``teacher``,
            ``teacher_shots``, ``metric_threshold``, ``round_temperature``.

    Raises:
        ConfigError: an option BootstrapFewShot does not take, or a value out of range.

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

    cli_name = "random_search"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        num_candidates: int = 8,
        stop_at_score: float | None = None,
        **options: Any,
    ) -> None:
        search = {k: v for k, v in options.items() if k in SearchOptions.names()}
        bootstrap = {k: v for k, v in options.items() if k not in search}
        super().__init__(metric, **{"racing": False, **search})
        if num_candidates < 0:
            raise ConfigError(f"num_candidates must be >= 0, got {num_candidates}")
        self.num_candidates = num_candidates
        self.stop_at_score = stop_at_score
        unknown = sorted(set(bootstrap) - BootstrapFewShot.OPTIONS)
        if unknown:
            raise ConfigError(
                f"RandomSearch has no option(s) {unknown}; search options: {sorted(SearchOptions.names())}, "
                f"bootstrap options: {sorted(BootstrapFewShot.OPTIONS)}"
            )
        self._bootstrap = BootstrapFewShot(metric, max_errors=self.options.max_errors, **bootstrap)

    @property
    def max_errors(self) -> int | None:
        """Failed runs tolerated while bootstrapping and per candidate evaluation."""
        return self._bootstrap.max_errors

    def _settings(self) -> dict[str, Any]:
        inner = self._bootstrap._settings()
        return {
            **inner,
            **self._search_settings(),
            "num_candidates": self.num_candidates,
            "stop_at_score": self.stop_at_score,
        }

    # ---- cost ----

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        n_train, n_val = self._val_size(trainset, valset)
        first = trainset[0] if trainset else None
        per_run = calls_per_run(program, first)
        b = self._bootstrap
        boot_runs = n_train * b.max_rounds if b.max_bootstrapped_demos else 0
        # The starting program is scored too (for the verdict) unless it is the zero-shot candidate.
        start_runs = n_val if any(p.demos for p in program.predictors()) else 0
        val_runs = (self.num_candidates + 3) * n_val + start_runs
        runs = boot_runs + val_runs
        estimate = CostEstimate(
            program_runs=runs,
            lm_calls=runs * per_run,
            min_lm_calls=(min(b.max_bootstrapped_demos, n_train) + n_val) * per_run,
            prompt_tokens=runs * tokens_per_run(program, first),
            breakdown={"bootstrap": boot_runs, "validation": val_runs},
        )
        # Typically: the bootstrapped candidates share their teacher runs (each row is run once),
        # and every candidate but zero-shot is padded with labelled demos up to max_labeled_demos.
        expected = Expected(run_shape(program, trainset))
        k, labeled = b.max_bootstrapped_demos, b.max_labeled_demos
        wanted = k + self.num_candidates * (k + 1) / 2
        teacher_demos = min(b._teacher_shots(), max(n_train - 1, 0))
        teacher_runs = bootstrap_runs(n_train, wanted, rounds=b.max_rounds) if k else 0
        expected.runs(teacher_runs, teacher_demos, prompts=teacher_runs)
        full = min(max(labeled, k), n_train)
        shuffled = min(max(labeled, (k + 1) / 2), n_train)
        expected.runs(n_val, prompts=1)  # zero-shot
        expected.runs(n_val, min(labeled, n_train), prompts=1)
        expected.runs(n_val, full, prompts=1)
        expected.runs(n_val * self.num_candidates, shuffled, prompts=self.num_candidates)
        expected.runs(start_runs, start_demos(program), prompts=1 if start_runs else 0)
        return self._plus_confirmation(estimate, program, trainset, valset, expected=expected, best_demos=full)

    # ---- search ----

    def _candidate(
        self, cid: int, program: Module, train: list[Example], boot: Bootstrapper, seed: int
    ) -> tuple[Module, dict[str, Any], bool]:
        """Build candidate ``cid``; the third item is True when the budget stopped its bootstrap."""
        b = self._bootstrap
        kind = _KINDS.get(cid, "bootstrap_shuffled")
        compiled, chosen, stopped = demo_set(
            kind,
            program,
            train,
            boot,
            rng=random.Random(f"oobleck-candidate:{seed}:{cid}"),
            max_bootstrapped_demos=b.max_bootstrapped_demos,
            max_labeled_demos=b.max_labeled_demos,
            max_rounds=b.max_rounds,
        )
        info: dict[str, Any] = {"id": cid, "kind": kind}
        if chosen is not None:
            info["bootstrapped_rows"] = chosen
        return compiled, info, stopped

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        split = self._split(trainset, valset, run.seed, quiet=bool(run.state))
        train, val = split.train, split.select
        run.notes = {
            "split": split.info,
            "bootstrap_trainset_sha256": rows_sha256(train),
            "scored_valset_sha256": rows_sha256(val),
        }
        boot = self._bootstrap.make_bootstrapper(program, run, train)
        scorer = self._scorer(val, run)
        done: dict[str, dict[str, Any]] = dict(run.state.get("candidates", {}))

        def save() -> None:
            run.save(
                {"runs": {k: v.to_data() for k, v in boot.runs.items()}, "candidates": done, "scorer": scorer.to_data()}
            )

        boot.on_run = scorer.on_chunk = save
        programs: dict[str, Module] = {}
        keys: dict[int, str] = {}
        stopped = False
        last_failure: Exception | None = None
        with self._reserve(run, program, split):
            for cid in range(-3, self.num_candidates):
                candidate, fresh, stopped = self._candidate(cid, program, train, boot, run.seed)
                if stopped:
                    break
                key = keys[cid] = candidate_key(candidate)
                info = done.get(str(cid))
                if info is None:
                    try:
                        scores = scorer.score(key, candidate, among=list(keys.values()))
                    except BudgetExceededError:
                        stopped = True
                        break
                    except TooManyErrorsError as exc:
                        log.warning("RandomSearch: candidate %d failed to evaluate: %s", cid, exc)
                        last_failure = exc
                        info = {**fresh, "score": None, "error": str(exc)}
                    else:
                        info = {**fresh, "score": scores.mean(), "errors": scores.errors}
                        if scores.dropped:
                            info.update(dropped=True, rows_scored=len(scores.scores))
                    done[str(cid)] = info
                    save()
                    log.info("RandomSearch: candidate %d (%s) scored %s", cid, info["kind"], info["score"])
                if info.get("score") is not None and not info.get("dropped"):
                    programs.setdefault(key, candidate)
                score = info.get("score")
                if self.stop_at_score is not None and score is not None and score >= self.stop_at_score:
                    break
            start_key = candidate_key(program)
            if not stopped and programs and start_key not in programs:
                stopped = not self._score_start(scorer, program)
        save()  # also records what a candidate interrupted mid-evaluation spent
        best = self._finish(run, scorer, program, {**programs, start_key: program}, stopped=stopped, split=split)
        best_key = run.scores.pop("best", None)
        best_id: int | str | None = next((cid for cid, k in keys.items() if k == best_key), None)
        if best_id is None and best_key is not None:
            best_id = "start"
        run.scores = {
            "candidates": [done[k] for k in sorted(done, key=int)],
            "best": best_id,
            "best_score": run.scores.pop("best_score", None),
            **run.scores,
        }
        if best_key is None and last_failure is not None and not stopped:
            raise last_failure
        return best
