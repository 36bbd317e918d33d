"""What the instruction optimizers share: one search session over candidate programs.

A :class:`Session` holds the starting program, the scorer, the proposer, the data summary and
the grounding demos, every candidate program by key, and the provenance record of each
candidate (its instruction(s), format, demo set, scores and lineage: parent, step, optimizer).
Its state (teacher runs, scores, proposals, summary) is checkpointed after every step, and a
resumed compile replays the same steps without paying for any call twice.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oobleck._estimate import Expected, bootstrap_runs
from oobleck._hashing import rows_sha256
from oobleck._run import run_example
from oobleck.errors import FATAL, BudgetExceededError, ConfigError, TooManyErrorsError
from oobleck.example import Example
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.optimize._base import CompileRun
from oobleck.optimize._bootstrap import Bootstrapper
from oobleck.optimize._identity import candidate_key, format_of
from oobleck.optimize._proposer import InstructionProposer, is_new
from oobleck.optimize._scoring import Scorer
from oobleck.optimize._search import SearchKwargs, SearchOptimizer, Split

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["InstructionSearchBase", "Session"]

log = logging.getLogger("oobleck.optimize")


def with_instruction(program: Module, name: str, text: str) -> Module:
    """A copy of ``program`` whose predictor ``name`` has instruction ``text``."""
    new = program.copy()
    p = dict(new.named_predictors())[name]
    p.signature = p.signature.with_instructions(text)
    return new


def with_format(program: Module, fmt: str) -> Module:
    """A copy of ``program`` whose every predictor uses the prompt format ``fmt``."""
    from oobleck.adapters.template import format_adapter

    adapter = format_adapter(fmt)
    new = program.copy()
    for p in new.predictors():
        p.adapter = adapter
    return new


def run_with_feedback(program: Module, name: str, ex: Example, metric: Callable[..., Any]) -> dict[str, Any]:
    """Run ``program`` on ``ex`` (:func:`oobleck._run.run_example`); one feedback record.

    The record holds predictor ``name``'s inputs and outputs in that run, the expected labels,
    the score and the metric's feedback (or, when it gives none, what was expected).
    """
    target = dict(program.named_predictors())[name]
    result = run_example(program, ex, metric)
    score, feedback = result.score, result.feedback
    if result.error is not None:  # a failed run is a lesson too
        feedback = f"the run failed: {result.error_text}"
    record: dict[str, Any] = {}
    for entry in result.entries:
        if entry.predictor is target:
            record.update({k: v for k, v in entry.inputs.items()})
            record.update({f"output {k}": v for k, v in (entry.outputs or {}).items()})
            if entry.error is not None:
                record["error"] = f"{type(entry.error).__name__}: {entry.error}"
            break
    expected = ex.labels()
    record["expected"] = ", ".join(f"{k}={v}" for k, v in expected.items())
    record["score"] = round(score, 4)
    record["feedback"] = feedback or ("correct" if score >= 1 else f"wrong; expected {record['expected']}")
    return record


#: Chooses the winner of a search: ``finish(scorer, start, candidates, stopped) -> program``.
Finisher = Callable[[Scorer, Module, Mapping[str, Module], bool], Module]


class Session:
    """One instruction search in progress (see the module docstring).

    Args:
        program: the starting program.
        train: the rows to bootstrap and reflect on.
        val: the rows candidates are scored on (the selection rows; never the confirming ones).
        run: the CompileRun of the compile (seed, checkpoint state, scores and notes).
        name: the optimizer's name (recorded with each candidate).
        scorer: scores candidates on ``val``.
        proposer: writes instructions.
        boot: the bootstrapper of the grounding demos (its runs are checkpointed here).
        finish: chooses the winner among the candidates.
        n_demos: grounding demos per predictor.
        formats: the prompt formats :meth:`try_formats` scores.
    """

    def __init__(
        self,
        program: Module,
        train: list[Example],
        val: list[Example],
        run: CompileRun,
        *,
        name: str,
        scorer: Scorer,
        proposer: InstructionProposer,
        boot: Bootstrapper,
        finish: Finisher,
        n_demos: int,
        formats: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.start = program
        self.train = train
        self.val = val
        self.run = run
        self.seed = run.seed
        self.scorer = scorer
        self.proposer = proposer
        self.n_demos = n_demos
        self.formats = list(formats)
        self._finish = finish
        self.programs: dict[str, Module] = {}
        self.records: list[dict[str, Any]] = []
        self.ids: dict[str, int] = {}
        self.proposals: dict[str, dict[str, Any]] = dict(run.state.get("proposals", {}))
        self.summary: str | None = run.state.get("summary")
        self.extra_state: dict[str, Any] = dict(run.state.get("extra", {}))
        self._demos: dict[str, list[Example]] | None = None
        self.boot = boot
        self.boot.on_run = self.save
        self.scorer.on_chunk = self.save  # the finished rows of the candidate in progress

    # ---- state ----

    def save(self) -> None:
        """Checkpoint everything a resumed compile needs."""
        self.run.save(
            {
                "runs": {k: v.to_data() for k, v in self.boot.runs.items()},
                "scorer": self.scorer.to_data(),
                "proposals": self.proposals,
                "summary": self.summary,
                "extra": self.extra_state,
            }
        )

    # ---- grounding ----

    def grounding_demos(self) -> dict[str, list[Example]]:
        """A few bootstrapped demos per predictor (labelled rows where none passed)."""
        if self._demos is None:
            n = self.n_demos
            order = list(range(len(self.train)))
            random.Random(f"oobleck-grounding:{self.seed}").shuffle(order)
            demos: dict[str, list[Example]] = {}
            if n:
                _, demos, stopped = self.boot.collect(self.train, order, max_demos=n, max_rounds=1)
                if stopped:
                    raise BudgetExceededError("budget reached while bootstrapping demos for the proposer")
            labelled = [self.train[i] for i in order[:n]]
            self._demos = {name: list(demos.get(name, [])) or labelled for name, _ in self.start.named_predictors()}
        return self._demos

    def data_summary(self) -> str:
        """The data summary, written once per compile (kept in the checkpoint)."""
        if self.summary is None:
            try:
                self.summary = self.proposer.summarize(self.start, self.train, self.seed)
            except FATAL:
                raise
            except Exception as exc:  # an unreadable summary is not fatal
                log.warning("could not write the data summary (%s); proposing without it", exc)
                self.summary = ""
            self.save()
        return self.summary

    def history(self, name: str) -> list[tuple[str, float | None]]:
        """Instructions tried for predictor ``name``, with their (possibly partial) scores."""
        out: list[tuple[str, float | None]] = []
        for r in self.records:
            text = (r.get("instructions") or {}).get(name)
            if text is not None:
                out.append((text, r.get("score") if r.get("score") is not None else r.get("partial_score")))
        return out

    def propose(self, parent: Module, name: str, *, rng: random.Random, sample: int, tag: str) -> str:
        """A new instruction for ``name`` (``""`` when the proposer wrote nothing new)."""
        return self._proposal(
            tag,
            parent,
            name,
            "proposer",
            lambda: self.proposer.propose(
                parent,
                name,
                summary=self.data_summary(),
                demos=self.grounding_demos()[name],
                history=self.history(name),
                rng=rng,
                sample=sample,
            ),
        )

    def reflect(self, parent: Module, name: str, records: Sequence[Mapping[str, Any]], *, sample: int, tag: str) -> str:
        """A rewritten instruction for ``name`` from feedback records (``""`` when nothing new)."""
        return self._proposal(
            tag, parent, name, "reflection", lambda: self.proposer.reflect(parent, name, records=records, sample=sample)
        )

    def _proposal(
        self, tag: str, parent: Module, name: str, what: str, write: Callable[[], tuple[str, dict[str, Any]]]
    ) -> str:
        """The text ``write()`` gives for ``tag``, made usable, written once and checkpointed."""
        known = self.proposals.get(tag)
        if known is None:
            tried = [t for t, _ in self.history(name)]
            try:
                text, info = write()
            except FATAL:
                raise
            except Exception as exc:  # an LM error or an unreadable answer: no candidate this time
                log.warning("%s call %s failed: %s", what, tag, exc)
                text, info = "", {"error": f"{type(exc).__name__}: {exc}"}
            text, info = self._usable(parent, name, text, info, tried)
            known = self.proposals[tag] = {"text": text, **info}
            self.save()
        return str(known["text"])

    def _usable(
        self, parent: Module, name: str, text: str, info: dict[str, Any], tried: Sequence[str]
    ) -> tuple[str, dict[str, Any]]:
        """``text`` if new, else the proposer's grounded fallback (``info`` says which and why)."""
        if text and not is_new(text, tried):
            info["rejected"] = "duplicate"
            text = ""
        elif not text:
            info.setdefault("rejected", "empty")
        if not text:
            text = self.proposer.fallback(parent, name, tried)
            if text:
                info["source"] = "template"
        return text, info

    # ---- candidates ----

    def record(self, program: Module, *, parent: str | None, step: int, kind: str, **extra: Any) -> tuple[str, bool]:
        """Register ``program`` as a candidate; returns its key and whether it is new."""
        key = candidate_key(program)
        if key in self.programs:
            return key, False
        self.programs[key] = program
        self.ids[key] = len(self.records)
        self.records.append(
            {
                "id": len(self.records),
                "key": key,
                "kind": kind,
                "optimizer": self.name,
                "parent": None if parent is None else self.ids.get(parent),
                "step": step,
                "instructions": {n: p.instructions for n, p in program.named_predictors()},
                "format": format_of(program),
                "demos": sum(len(p.demos) for p in program.predictors()),
                "score": None,
                "partial_score": None,
                "rows_scored": 0,
                "dropped": False,
                **extra,
            }
        )
        return key, True

    def add(
        self,
        program: Module,
        *,
        parent: str | None,
        step: int,
        kind: str,
        race: bool | None = None,
        rows: Sequence[int] | None = None,
        **extra: Any,
    ) -> str:
        """Register and score ``program`` (on ``rows``, default the whole valset, with racing)."""
        key, _ = self.record(program, parent=parent, step=step, kind=kind, **extra)
        self.score(key, rows=rows, race=race)
        return key

    def score(self, key: str, *, rows: Sequence[int] | None = None, race: bool | None = None) -> None:
        """Score candidate ``key`` (more rows when it was scored on fewer), then update its record."""
        rec = self.records[self.ids[key]]
        try:
            self.scorer.score(key, self.programs[key], rows, race=race, among=list(self.programs))
        except TooManyErrorsError as exc:
            log.warning("%s: candidate %d failed to evaluate: %s", self.name, rec["id"], exc)
            rec["error"] = str(exc)
        finally:
            self.update(key)
            self.save()

    def update(self, key: str) -> None:
        """Copy the scorer's numbers into the record of ``key``."""
        rec = self.records[self.ids[key]]
        c = self.scorer.candidates.get(key)
        if c is None:
            return
        complete = self.scorer.complete(key)
        rec["score"] = c.mean() if complete and not c.dropped else None
        rec["partial_score"] = round(c.mean(), 4) if c.scores else None
        rec["rows_scored"] = len(c.scores)
        rec["dropped"] = c.dropped

    def score_start(self) -> str:
        """Register the starting program and score it on the whole valset (never raced)."""
        key, _ = self.record(self.start, parent=None, step=0, kind="start")
        self.score(key, race=False)
        return key

    def try_formats(self) -> str:
        """Score the starting program in each of the optimizer's formats; the incumbent's key."""
        start = candidate_key(self.start)
        for fmt in self.formats:
            self.add(with_format(self.start, fmt), parent=start, step=0, kind="format")
        return self.incumbent_or(start)

    def incumbent_or(self, default: str) -> str:
        """The best fully scored candidate so far, else ``default``."""
        best = self.scorer.incumbent(list(self.programs))
        return best if best is not None else default

    def finish(self, *, stopped: bool) -> Module:
        """Choose the winner (with ``finish``) and record every candidate."""
        for key in self.programs:
            self.update(key)
        best = self._finish(self.scorer, self.start, self.programs, stopped)
        best_key = self.run.scores.get("best")
        self.run.scores["best"] = self.ids.get(best_key) if best_key is not None else None
        self.run.scores["candidates"] = self.records
        self.run.notes["data_summary"] = self.summary
        self.run.notes["proposals"] = {k: self.proposals[k] for k in sorted(self.proposals)}
        return best


class InstructionSearchBase(SearchOptimizer):
    """The settings and session the instruction optimizers share.

    Args:
        metric: the metric (a score with feedback is accepted).
        prompt_lm: the LM that writes instructions (default: the task LM).
        formats: prompt format names to try (see :mod:`oobleck.adapters.template`).
        n_demos: bootstrapped demos shown to the proposer per predictor.
        grounded_fallback: see :class:`~oobleck.optimize._proposer.InstructionProposer`.
        **options: the search options (:class:`~oobleck.optimize._search.SearchOptions`).
    """

    prompt_lm_option = "prompt_lm"

    def __init__(
        self,
        metric: Callable[..., Any],
        *,
        prompt_lm: LM | None = None,
        formats: Sequence[str] | None = None,
        n_demos: int = 3,
        grounded_fallback: bool = True,
        **options: Unpack[SearchKwargs],
    ) -> None:
        super().__init__(metric, **options)
        from oobleck.adapters.template import FORMATS
        from oobleck.optimize.bootstrap import BootstrapFewShot

        unknown = [f for f in formats or () if f not in FORMATS]
        if unknown:
            raise ConfigError(f"unknown format(s) {unknown}; known: {sorted(FORMATS)}")
        if n_demos < 0:
            raise ConfigError(f"n_demos must be >= 0, got {n_demos}")
        self.formats: list[str] = list(formats or ())
        self.n_demos = n_demos
        self.proposer = InstructionProposer(prompt_lm=prompt_lm, grounded_fallback=grounded_fallback)
        self._grounding_bootstrap = BootstrapFewShot(
            metric, max_bootstrapped_demos=n_demos, max_labeled_demos=0, teacher_shots=n_demos
        )

    def _expect_grounding(self, expected: Expected, n_train: int) -> None:
        """The expected cost every instruction search pays first: grounding demos and the data summary."""
        teacher_runs = bootstrap_runs(n_train, self.n_demos)
        expected.runs(teacher_runs, min(self.n_demos, max(n_train - 1, 0)), prompts=teacher_runs)
        expected.proposer_calls(1, min(self.proposer.summary_rows, n_train))

    def _instruction_settings(self) -> dict[str, Any]:
        return {
            **self._search_settings(),
            "formats": self.formats,
            "n_demos": self.n_demos,
            "proposer": self.proposer.settings(),
        }

    def _search(
        self,
        program: Module,
        trainset: list[Example],
        valset: list[Example] | None,
        run: CompileRun,
        steps: Callable[[Session], None],
    ) -> tuple[Module, Session]:
        """Split the data, open a Session, run ``steps`` until done or stopped by the budget, choose.

        A candidate that fails too often stops the compile (after a checkpoint); the budget only
        ends the search. Returns the winner and the session.
        """
        split = self._split(trainset, valset, run.seed, quiet=bool(run.state))
        run.notes = {"split": split.info, "scored_valset_sha256": rows_sha256(split.select)}
        s = self._start(program, split, run)
        stopped = False
        try:
            with self._reserve(run, program, split):
                steps(s)
        except BudgetExceededError:
            stopped = True
        except TooManyErrorsError:
            s.save()
            raise
        s.save()
        return s.finish(stopped=stopped), s

    def _start(self, program: Module, split: Split, run: CompileRun) -> Session:
        def finish(scorer: Scorer, start: Module, candidates: Mapping[str, Module], stopped: bool) -> Module:
            return self._finish(run, scorer, start, candidates, stopped=stopped, split=split)

        return Session(
            program,
            split.train,
            split.select,
            run,
            name=self.name,
            scorer=self._scorer(split.select, run),
            proposer=self.proposer,
            boot=self._grounding_bootstrap.make_bootstrapper(program, run, split.train),
            finish=finish,
            n_demos=self.n_demos,
            formats=self.formats,
        )
