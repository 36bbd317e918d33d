"""Auto: a portfolio of optimizers under one LM-call budget, chosen on selection rows, confirmed on others.

The portfolio, in order (cheapest first): few-shot demo search (:class:`RandomSearch`), prompt
format search (:class:`InstructionSearch` over five formats, then one instruction),
:class:`JointSearch` (skipped, with a note, when optuna is not installed) and
:class:`ReflectiveEvolution`. The data is split once, as for every searching optimizer (see
:mod:`oobleck.optimize._search`): rows to learn from, selection rows and confirming rows. Every
member searches on the same rows to learn from and is scored on the same selection rows; none
of them ever sees the confirming rows. Auto keeps the member whose program scores best on the
selection rows (the starting program when none beats it), then measures that program's paired
gain over the starting program on the confirming rows: the verdict.

The members share an in-memory LM cache for the length of the compile: a request one member
sent (the starting program on a selection row, a format another member also tries, the same
data summary) is answered from it, free, instead of being sent again. The program returned
uses the LMs it was given.

The budget: ``budget`` (or ``max_lm_calls``) is one cap on the LM calls of the whole compile.
What confirmation will cost is kept back first; each member then gets an equal share of what
is left, and what a member does not spend passes on to the next ones. A member's budget is
made inside Auto's, so each of its calls is reserved in both before it is sent: a member
stops cleanly at its share with the best program it has, whatever its threads and retries, and
the compile never sends more than ``budget`` calls.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from oobleck._estimate import CostEstimate, Expected, calls_per_run, run_shape, tokens_per_run
from oobleck.context import context, current
from oobleck.errors import ConfigError, TooManyErrorsError
from oobleck.example import Example
from oobleck.lm.base import LM
from oobleck.lm.cached import Cache, CachedLM
from oobleck.lm.types import Usage, usage_dict
from oobleck.module import Module
from oobleck.optimize._base import CompileRun
from oobleck.optimize._scoring import select
from oobleck.optimize._search import SearchOptimizer, Split
from oobleck.optimize.instruction_search import InstructionSearch
from oobleck.optimize.joint_search import JointSearch
from oobleck.optimize.random_search import RandomSearch
from oobleck.optimize.reflective import ReflectiveEvolution

__all__ = ["Auto"]

log = logging.getLogger("oobleck.optimize")

#: The prompt formats the "format" member tries.
FORMAT_CHOICES = ["chat", "json", "one_line", "keys_hint", "prefix"]

#: The options every member takes from Auto.
_SHARED = ("num_threads", "max_errors", "racing", "prompt_tolerance")


def _optuna_installed() -> bool:
    return importlib.util.find_spec("optuna") is not None


class _SharedCache:
    """One in-memory cache in front of every LM the members use, for one compile."""

    def __init__(self) -> None:
        self.cache = Cache(None, memory_size=1_000_000)
        self.wrappers: dict[int, CachedLM] = {}

    def wrap(self, lm: LM) -> CachedLM:
        if isinstance(lm, CachedLM) and any(w is lm for w in self.wrappers.values()):
            return lm
        return self.wrappers.setdefault(id(lm), CachedLM(lm, self.cache))

    def program(self, program: Module) -> Module:
        """A copy of ``program`` whose predictors' LMs go through the cache."""
        shared = program.copy()
        for p in shared.predictors():
            if p.lm is not None:
                p.lm = self.wrap(p.lm)
        return shared

    def unwrap(self, program: Module) -> Module:
        """``program`` with the LMs it was given back (in place; it is a member's copy)."""
        ours = {id(w): w.lm for w in self.wrappers.values()}
        for p in program.predictors():
            if p.lm is not None and id(p.lm) in ours:
                p.lm = ours[id(p.lm)]
        return program

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The context's LM (for predictors without their own) through the cache, inside the block."""
        lm = current().lm
        if lm is None:
            yield
            return
        with context(lm=self.wrap(lm)):
            yield


class Auto(SearchOptimizer):
    """Run a portfolio of optimizers under one call budget; keep the best on selection rows, confirm it.

    Args:
        metric: ``fn(example, prediction, trace=None)`` returning a number, a bool, or a score
            with feedback.
        budget: the most LM calls the whole compile may send (members, their proposer and
            reflection calls, and confirmation); None: no cap (each member runs its own size).
            ``max_lm_calls=`` is the same setting.
        members: the portfolio, as ``{name: optimizer}`` (searching optimizers, run in this
            order); default: ``few_shot``, ``format``, ``joint`` and ``reflective`` (see the
            module docstring). Each is run as a copy with Auto's ``num_threads``,
            ``max_errors``, ``racing`` and ``prompt_tolerance``, its share of the budget, and
            no confirmation of its own.
        prompt_lm: the LM that writes instructions for the default members (default: the task LM).
        **options: the search options (``num_threads``, ``max_errors``, ``racing``,
            ``require_significant``, ``prompt_tolerance``, ``val_fraction``,
            ``confirm_fraction``, ``max_lm_calls``, ``max_tokens``; see
            :class:`~oobleck.optimize._search.SearchOptions`). ``require_significant`` returns
            the starting program unless the gain on the confirming rows is significant.

    Raises:
        ConfigError: a member that is not a searching optimizer, or ``budget`` and
            ``max_lm_calls`` that disagree.

    Example:
        >>> from oobleck import Example, FakeLM, Predict
        >>> from oobleck.metrics import exact_match
        >>> rows = [Example(q=str(i), a="0").with_inputs("q") for i in range(30)]
        >>> lm = FakeLM(lambda r: {"instruction": "Answer 0.", "summary": "digits", "a": "0"})
        >>> best = Auto(exact_match, budget=400).compile(
        ...     Predict("q -> a", lm=lm), trainset=rows[:6], valset=rows[6:], progress=False)
        >>> best.provenance["scores"]["verdict"]["reason"]
        'the starting program won the selection; there is no gain to confirm'
        >>> len(lm.requests) <= 400
        True
    """

    cli_name = "auto"
    prompt_lm_option = "prompt_lm"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        budget: int | None = None,
        members: Mapping[str, SearchOptimizer] | None = None,
        prompt_lm: LM | None = None,
        **options: Any,
    ) -> None:
        given = options.get("max_lm_calls")
        if budget is not None and given is not None and given != budget:
            raise ConfigError(
                f"Auto: budget={budget} and max_lm_calls={given} disagree; they are one setting, pass one"
            )
        options["max_lm_calls"] = budget if budget is not None else given
        super().__init__(metric, **options)
        self.budget = self.options.max_lm_calls
        self.prompt_lm = prompt_lm
        if members is not None:
            bad = [n for n, m in members.items() if not isinstance(m, SearchOptimizer)]
            if bad or not members:
                raise ConfigError(
                    f"Auto: members must be searching optimizers (RandomSearch, InstructionSearch, JointSearch, "
                    f"ReflectiveEvolution, ...), got {bad or 'none'}"
                )
        self._members = dict(members) if members is not None else None

    # ---- the portfolio ----

    def portfolio(self) -> dict[str, SearchOptimizer]:
        """The members, by name, in the order they run (before Auto's options are applied)."""
        if self._members is not None:
            return dict(self._members)
        m, lm = self.metric, self.prompt_lm
        two = ["one_line", "keys_hint"]
        return {
            "few_shot": RandomSearch(m, num_candidates=4, max_bootstrapped_demos=4, max_labeled_demos=4),
            "format": InstructionSearch(m, breadth=1, depth=1, n_demos=2, formats=FORMAT_CHOICES, prompt_lm=lm),
            "joint": JointSearch(
                m,
                auto=None,
                num_trials=8,
                num_instructions=2,
                num_demo_sets=3,
                minibatch_size=8,
                full_eval_every=4,
                formats=two,
                prompt_lm=lm,
            ),  # fmt: skip
            "reflective": ReflectiveEvolution(
                m, iterations=3, minibatch_size=4, demos=True, max_demos=2, formats=two, reflection_lm=lm
            ),
        }

    def _member(self, member: SearchOptimizer, *, calls: int | None, tokens: int | None) -> SearchOptimizer:
        shared = {k: getattr(self.options, k) for k in _SHARED}
        return member._with_options(
            **shared, confirm_fraction=0.0, require_significant=False, max_lm_calls=calls, max_tokens=tokens
        )

    @staticmethod
    def _skip_reason(member: SearchOptimizer) -> str | None:
        if isinstance(member, JointSearch) and not _optuna_installed():
            return "optuna is not installed (pip install 'oobleck[optuna]'); JointSearch skipped"
        return None

    def _settings(self) -> dict[str, Any]:
        members = {}
        for name, m in self.portfolio().items():
            inner = self._member(m, calls=None, tokens=None).settings()
            members[name] = {"optimizer": m.name, **{k: v for k, v in inner.items() if k not in self._budget_settings}}
        return {**self._search_settings(), "budget": self.budget, "members": members, "shared_cache": "memory"}

    # ---- cost ----

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        n_train, n_select, _ = self._sizes(trainset, valset)
        pool = list(trainset) + list(valset or [])
        train, sel = pool[:n_train], (valset or trainset)[:n_select]
        total: CostEstimate | None = None
        breakdown: dict[str, int] = {}
        for name, m in self.portfolio().items():
            if self._skip_reason(m) is not None:
                continue
            e = self._member(m, calls=None, tokens=None)._estimate(program, train, sel)
            breakdown[name] = e.program_runs
            total = (
                e
                if total is None
                else replace(total.plus(e), min_lm_calls=min(total.min_lm_calls, e.min_lm_calls), breakdown={})
            )
        total = replace(
            total or CostEstimate(program_runs=0, lm_calls=0, min_lm_calls=0, prompt_tokens=0), breakdown=breakdown
        )
        expected = Expected(run_shape(program, trainset))
        expected.calls, expected.prompt, expected.completion = (
            total.expected_lm_calls,
            total.prompt_tokens,
            total.completion_tokens,
        )
        estimate = self._plus_confirmation(total, program, trainset, valset, expected=expected)
        if self.budget is None:
            return estimate
        # The budget stops the members: what is expected past it is never spent.
        share = min(1.0, self.budget / estimate.expected_lm_calls) if estimate.expected_lm_calls else 1.0
        return replace(
            estimate,
            lm_calls=min(estimate.lm_calls, self.budget),
            min_lm_calls=min(estimate.min_lm_calls, self.budget),
            expected_lm_calls=round(estimate.expected_lm_calls * share),
            prompt_tokens=round(estimate.prompt_tokens * share),
            completion_tokens=round(estimate.completion_tokens * share),
        )

    # ---- the compile ----

    def _reserved(self, program: Module, split: Split) -> tuple[int, int]:
        """(calls, tokens) confirmation will take."""
        if not split.confirm:
            return 0, 0
        first = split.confirm[0]
        runs = 2 * len(split.confirm)
        return runs * calls_per_run(program, first), runs * tokens_per_run(program, first)

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        split = self._split(trainset, valset, run.seed, quiet=bool(run.state))
        run.notes = {"split": split.info}
        members = self.portfolio()
        reserve_calls, reserve_tokens = self._reserved(program, split)
        done: dict[str, dict[str, Any]] = dict(run.state.get("members", {}))
        records: list[dict[str, Any]] = []
        programs: dict[str, Module] = {}
        runnable = [n for n, m in members.items() if self._skip_reason(m) is None]
        shared = _SharedCache()
        start = shared.program(program)
        for name, member in members.items():
            record: dict[str, Any] = {"name": name, "optimizer": member.name}
            records.append(record)
            skip = self._skip_reason(member)
            if skip is not None:
                record["skipped"] = skip
                log.info("Auto: %s", skip)
                continue
            left = len(runnable) - runnable.index(name)
            if name in done:  # resumed: the share it had, whatever was spent since
                calls, tokens = done[name]["budget"], done[name]["token_budget"]
            else:
                calls = self._share(self.budget, run.budget.spent.calls, reserve_calls, left)
                tokens = self._share(self.max_tokens, run.budget.spent.total_tokens, reserve_tokens, left)
            record["budget"] = calls
            if calls == 0 or tokens == 0:
                record["skipped"] = "no budget left"
                continue
            with shared.active():
                compiled = self._run_member(name, member, start, split, run, calls=calls, tokens=tokens, record=record)
            if compiled is not None:
                programs[name] = shared.unwrap(compiled)
            if name not in done:
                done[name] = {"usage": record.pop("_usage", None), "budget": calls, "token_budget": tokens}
                run.save({"members": done})
            record.pop("_usage", None)
        return self._choose(run, program, split, records, programs, reserve_calls)

    @staticmethod
    def _share(limit: int | None, spent: int, reserve: int, members_left: int) -> int | None:
        if limit is None:
            return None
        return max(0, limit - reserve - spent) // max(members_left, 1)

    def _run_member(
        self,
        name: str,
        member: SearchOptimizer,
        program: Module,
        split: Split,
        run: CompileRun,
        *,
        calls: int | None,
        tokens: int | None,
        record: dict[str, Any],
    ) -> Module | None:
        """Compile one member on the rows to learn from and the selection rows; fill its record."""
        ckpt = run.checkpoint.path
        member_ckpt = None if ckpt is None else Path(f"{ckpt}.{name}.json")
        resumed = name in run.state.get("members", {})
        try:
            with warnings.catch_warnings():
                # Auto's own split has warned about rows shared by the trainset and the valset.
                warnings.filterwarnings("ignore", message=".*valset rows also appear in the trainset")
                compiled = self._member(member, calls=calls, tokens=tokens).compile(
                    program,
                    trainset=split.train,
                    valset=split.select,
                    seed=run.seed,
                    checkpoint=member_ckpt,
                    progress=False,
                )
        except TooManyErrorsError as exc:
            log.warning("Auto: member %s failed: %s", name, exc)
            record["error"] = str(exc)
            return None
        usage = compiled.compile_usage or Usage()
        # The member's budget was made inside Auto's (its parent): each of its calls was
        # reserved in both and is already in Auto's spending; only the bar is told here.
        if not resumed and run.budget.on_charge is not None:
            run.budget.on_charge(usage)
        prov = compiled.provenance or {}
        scores = prov.get("scores") or {}
        record.update(
            selection_score=scores.get("best_score"),
            start_score=scores.get("start_score"),
            calls=usage.calls,
            cache_hits=usage.cache_hits,
            stopped_early=prov.get("stopped_early"),
            best=scores.get("best"),
            selection_verdict=scores.get("selection_verdict"),
            racing=scores.get("racing"),
            _usage=usage_dict(usage),
        )
        log.info("Auto: %s scored %s on the selection rows with %d calls", name, record["selection_score"], usage.calls)
        return compiled if scores.get("best") is not None else None

    def _choose(
        self,
        run: CompileRun,
        program: Module,
        split: Split,
        records: list[dict[str, Any]],
        programs: Mapping[str, Module],
        reserve: int,
    ) -> Module:
        """Keep the best member on the selection rows (the start on ties), then confirm it."""
        by_name = {r["name"]: r for r in records}
        starts = [r["start_score"] for r in records if r.get("start_score") is not None]
        start_score = starts[0] if starts else None
        means: dict[str, float] = {}
        if start_score is not None:
            means["start"] = start_score
        for name in programs:
            score = by_name[name].get("selection_score")
            if score is not None:
                means[name] = score
        run.scores["members"] = records
        run.scores["budget"] = {"max_lm_calls": self.budget, "reserved_for_confirmation": reserve}
        run.scores["start_score"] = start_score
        if not means or set(means) == {"start"}:
            run.scores.update(winner="start", why="no member produced a fully scored program", best_score=start_score)
            run.scores["selection_verdict"] = None
            run.scores["verdict"] = {"confirmed": False, "reason": "no member produced a fully scored program"}
            return self._decide(run, program, program)
        first = split.select[0]
        candidates = {k: (program if k == "start" else programs[k]) for k in means}
        lengths = {k: tokens_per_run(candidates[k], first) for k in means}
        winner = select(means, lengths, tolerance=self.options.prompt_tolerance)
        others = ", ".join(f"{k} {v:.1f}" for k, v in means.items() if k != winner)
        n = len(split.select)
        if winner == "start":
            why = (
                f"no member beat the starting program on the {n} selection rows ({others}; start {means['start']:.1f})"
            )
        else:
            why = f"{winner} scored best on the {n} selection rows: {means[winner]:.1f} (others: {others})"
        run.scores.update(winner=winner, why=why, best_score=means[winner])
        run.scores["selection_verdict"] = None if winner == "start" else by_name[winner].get("selection_verdict")
        log.info("Auto: %s", why)
        best = candidates[winner]
        run.scores["verdict"] = self._confirm(program, best, split, same=winner == "start", run=run)
        return self._decide(run, program, best)
