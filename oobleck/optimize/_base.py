"""The shared frame of every optimizer: validate, estimate, budget, checkpoint, provenance.

This is the public seam for a new optimizer (exported from :mod:`oobleck.optimize`). A
subclass of :class:`Optimizer` implements three hooks and states three facts:

- ``_settings()``: its configuration as JSON data (recorded in provenance; a checkpoint names
  the compile by it);
- ``_estimate(program, trainset, valset)``: the :class:`~oobleck._budget.CostEstimate` of a
  compile, worked out without calling any LM (``compile(dry_run=True)`` returns it);
- ``_compile(program, trainset, valset, run)``: the work, returning a new program; ``run`` is
  the :class:`CompileRun` of this call (seed, budget, checkpoint state, and the ``scores`` and
  ``notes`` it reports);
- the class attributes ``cli_name``, ``needs_metric`` and ``prompt_lm_option``, which the
  ``oobleck compile`` command reads.

``compile`` never mutates the program or the data it is given, draws randomness only from
``random.Random(seed)``, and sets ``compiled.provenance`` (see :func:`provenance`) on the
returned copy. Examples are run and scored through :func:`oobleck._run.run_example`, which
checks and charges the budget the frame activates.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import typing
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, overload

from oobleck import _progress, callbacks
from oobleck._budget import Budget
from oobleck._budget import active as active_budget
from oobleck._checkpoint import Checkpoint
from oobleck._estimate import CostEstimate
from oobleck._hashing import canonical_json, rows_sha256
from oobleck._version import __version__
from oobleck.errors import CompileError, ConfigError
from oobleck.example import Example
from oobleck.lm.types import usage_dict, usage_from_dict
from oobleck.module import Module
from oobleck.optimize._identity import program_fingerprint

__all__ = ["CompileRun", "Optimizer", "check_rows", "provenance"]

log = logging.getLogger("oobleck.optimize")

F = TypeVar("F", bound=typing.Callable[..., Any])


def check_rows(rows: Sequence[Any], what: str) -> list[Example]:
    """Every row must be an Example with inputs marked."""
    out = list(rows)
    for i, ex in enumerate(out):
        if not isinstance(ex, Example) or ex.input_keys is None:
            raise ConfigError(f"{what}[{i}] is not an Example with inputs; use Example(...).with_inputs('field', ...)")
    return out


def provenance(
    *,
    optimizer: str,
    settings: Mapping[str, Any],
    seed: int,
    lm_calls: int | None,
    tokens: int | None,
    stopped_early: bool,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record a compiled program carries (JSON data).

    Args:
        optimizer: the optimizer's name.
        settings: its configuration.
        seed: the seed of the compile.
        lm_calls: the LM calls compiling this program takes, cache hits included (so a rerun
            on the same cache records the same number); None when unknown.
        tokens: the tokens of those calls, cached ones included; None when unknown.
        stopped_early: whether a budget stopped the compile (with ``stop_reason``, the limit
            that did, in ``extra``).
        **extra: what the optimizer records beyond that (data hashes, scores, members, ...).
    """
    return {
        "optimizer": optimizer,
        "settings": settings,
        "seed": seed,
        **extra,
        "lm_calls": lm_calls,
        "tokens": tokens,
        "stopped_early": stopped_early,
    }


def _watched(compile: F) -> F:
    """``compile`` sending an optimizer event around each compile (not a dry run) to the callbacks."""

    @functools.wraps(compile)
    def watched(self: Optimizer, *args: Any, **options: Any) -> Any:
        if options.get("dry_run"):
            return compile(self, *args, **options)
        for name in ("trainset", "valset"):  # read once here: an iterator of rows is counted, not used up
            rows = options.get(name)
            if rows is not None and not isinstance(rows, Sized):
                options[name] = list(rows)
        trainset, valset = options.get("trainset"), options.get("valset")
        given = {
            "trainset": None if trainset is None else len(trainset),
            "valset": None if valset is None else len(valset),
        }
        with callbacks.step("optimizer", self.name, self, {**given, "seed": options.get("seed", 0)}) as step:
            compiled = compile(self, *args, **options)
            step.done(compiled)
        return compiled

    return typing.cast(F, watched)


def decoding_in_force(program: Module) -> dict[str, dict[str, Any]]:
    """Per predictor, the decoding its calls ran with beyond its own config (JSON data).

    Provenance records it as ``"decoding"`` (only the predictors with something to record, and
    no key at all when none has), and :func:`oobleck.artifact.export_request` pins it.

    The LM's own settings (what its constructor was given: ``LocalLM``'s greedy
    ``temperature=0``, the CLI's ``--temperature``), then ``oobleck.context(temperature=...)``,
    which wins over them as it does in each request. Only the knobs in ``DECODING_KEYS``:
    never a header, an endpoint or a key. A predictor with no LM in reach records ``{}``.
    """
    from oobleck.context import current
    from oobleck.lm._policy import DECODING_KEYS
    from oobleck.lm.cached import lm_settings

    settings = current()
    out: dict[str, dict[str, Any]] = {}
    for name, p in program.named_predictors():
        lm = p.lm or settings.lm
        given = lm_settings(lm) if lm is not None else {}
        decoding = {k: list(v) if isinstance(v, tuple) else v for k, v in given.items() if k in DECODING_KEYS}
        if settings.temperature is not None:
            decoding["temperature"] = settings.temperature
        out[name] = decoding
    return out


def _decoding_record(program: Module) -> dict[str, Any]:
    found = {name: d for name, d in decoding_in_force(program).items() if d}
    return {"decoding": found} if found else {}


@dataclass(slots=True)
class CompileRun:
    """The state of one ``compile`` call, handed to the optimizer's ``_compile`` hook.

    Attributes:
        seed: the seed.
        budget: the call/token budget (already active in the context).
        checkpoint: where progress is saved.
        state: the state loaded from the checkpoint ({} for a fresh compile).
        scores: what the optimizer reports in provenance under ``"scores"``.
        notes: anything else worth recording in provenance (JSON data).
        progress: whether the caller wants progress bars (``compile(progress=...)``).
    """

    seed: int
    budget: Budget
    checkpoint: Checkpoint
    state: dict[str, Any]
    scores: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    _saved: dict[str, Any] = field(default_factory=dict, repr=False)

    def save(self, state: Mapping[str, Any]) -> None:
        """Checkpoint ``state`` together with what was spent so far."""
        self._saved = {k: v for k, v in state.items() if k != "spent"}
        self.checkpoint.save({**self._saved, "spent": usage_dict(self.budget.spent)})

    def save_part(self, key: str, value: Any) -> None:
        """Checkpoint ``value`` under ``key`` beside the state saved last (or loaded)."""
        base = self._saved or {k: v for k, v in self.state.items() if k != "spent"}
        self.save({**base, key: value})


class Optimizer:
    """Base class: turns a program and data into a new program with other parameters.

    Subclasses implement ``_settings``, ``_estimate`` and ``_compile`` (see the module
    docstring) and set the class attributes below.

    Args:
        max_lm_calls: a cap on the LM calls that reach a backend: every attempt (first tries,
            parse repairs, transport retries, proposer, reflection and calibration calls) is
            reserved before it is sent, across threads, so no more are ever sent; the compile
            then stops cleanly with the best program so far (provenance ``stopped_early`` and
            ``stop_reason``). Cache hits are free. Counted across resumed sessions, calls in
            flight at a kill included (with a checkpoint).
        max_tokens: the same cap for prompt plus completion tokens; each call reserves an upper
            bound (its text's bytes plus ``max_tokens``, see :func:`oobleck._budget.token_bound`)
            and settles to the tokens the backend reports.

    Attributes:
        cli_name: the name ``oobleck compile --optimizer`` knows it by (None: not offered).
        needs_metric: the constructor takes the metric as its first argument.
        prompt_lm_option: the constructor option that takes the LM writing instructions
            (what ``--prompt-lm`` sets), if it has one.
    """

    cli_name: ClassVar[str | None] = None
    needs_metric: ClassVar[bool] = False
    prompt_lm_option: ClassVar[str | None] = None

    #: Settings that are budgets: a resumed compile may change them (resuming with more is the point).
    _budget_settings: tuple[str, ...] = ("max_lm_calls", "max_tokens")

    def __init__(self, *, max_lm_calls: int | None = None, max_tokens: int | None = None) -> None:
        self.max_lm_calls = max_lm_calls
        self.max_tokens = max_tokens

    @property
    def name(self) -> str:
        """The optimizer's name, as recorded in provenance."""
        return type(self).__name__

    # ---- the hooks a subclass implements ----

    def _settings(self) -> dict[str, Any]:
        """The optimizer's own configuration as JSON data (the budget limits are added)."""
        return {}

    def _estimate(self, program: Module, trainset: list[Example], valset: list[Example] | None) -> CostEstimate:
        """What ``compile`` is planned to cost, without calling any LM (rows already checked)."""
        return CostEstimate(program_runs=0, lm_calls=0, min_lm_calls=0, prompt_tokens=0)

    def _compile(
        self, program: Module, trainset: list[Example], valset: list[Example] | None, run: CompileRun
    ) -> Module:
        """The compile itself: return a new program (never change ``program``).

        Runs under ``run.budget`` (active, so every example run is checked and charged);
        report in ``run.scores`` and ``run.notes``, and checkpoint with ``run.save(state)``.
        """
        raise NotImplementedError

    # ---- the frame ----

    def settings(self) -> dict[str, Any]:
        """The optimizer's configuration as JSON data (recorded in provenance)."""
        base: dict[str, Any] = {"max_lm_calls": self.max_lm_calls, "max_tokens": self.max_tokens}
        base.update(self._settings())
        return base

    def estimate(
        self, program: Module, *, trainset: Sequence[Example], valset: Sequence[Example] | None = None
    ) -> CostEstimate:
        """What ``compile`` is planned to cost, without calling any LM."""
        return self._estimate(
            program, check_rows(trainset, "trainset"), None if valset is None else check_rows(valset, "valset")
        )

    @overload
    def compile(
        self,
        program: Module,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = ...,
        seed: int = ...,
        checkpoint: str | os.PathLike[str] | None = ...,
        dry_run: Literal[False] = ...,
        progress: bool = ...,
    ) -> Module: ...

    @overload
    def compile(
        self,
        program: Module,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = ...,
        seed: int = ...,
        checkpoint: str | os.PathLike[str] | None = ...,
        dry_run: Literal[True],
        progress: bool = ...,
    ) -> CostEstimate: ...

    @_watched
    def compile(
        self,
        program: Module,
        *,
        trainset: Sequence[Example],
        valset: Sequence[Example] | None = None,
        seed: int = 0,
        checkpoint: str | os.PathLike[str] | None = None,
        dry_run: bool = False,
        progress: bool = True,
    ) -> Module | CostEstimate:
        """Return a new program with optimized parameters; ``program`` is never changed.

        Args:
            program: the program to optimize.
            trainset: examples with inputs marked.
            valset: examples to score candidates on (optimizers that score).
            seed: the only source of randomness.
            checkpoint: a JSON file to save progress to and resume from.
            dry_run: return the CostEstimate and call nothing.
            progress: show a progress bar when stderr is a terminal: program runs done of the
                most planned, the best candidate score so far, LM calls and cache hits, ETA.
                False never does (nor do the evaluations inside a compile draw their own).

        Returns:
            The compiled copy, with a ``provenance`` dict attribute; or, with ``dry_run``,
            the CostEstimate.

        Raises:
            ConfigError: bad data or settings, or a checkpoint from another compile.
            CompileError: every LM call the compile made failed (none answered); it says how
                many and the first error.
        """
        train = check_rows(trainset, "trainset")
        val = None if valset is None else check_rows(valset, "valset")
        estimate = self._estimate(program, train, val)
        if dry_run:
            return estimate
        log.info("%s: planned %s", self.name, estimate)
        settings = self.settings()
        fingerprint = {
            "optimizer": self.name,
            # The limits may change between sessions: resuming with a larger budget is the point.
            "settings": {k: v for k, v in settings.items() if k not in self._budget_settings},
            "seed": seed,
            "trainset": rows_sha256(train),
            "valset": rows_sha256(val),
            "program": canonical_json(program_fingerprint(program)),
        }
        program = _with_batch_calibration_rows(program, train)
        ckpt = Checkpoint(checkpoint, fingerprint)
        resumed = ckpt.exists()
        state = ckpt.load() or {}
        ledger = ckpt.ledger()
        # Every call ever sent: the ledger records each one as it is reserved, so a compile
        # killed after its last save still counts what it sent since (checkpoints before the
        # ledger existed record only what was spent at their last save).
        recorded = ledger.open(resume=resumed) if ledger is not None else None
        budget = Budget(
            max_lm_calls=self.max_lm_calls,
            max_tokens=self.max_tokens,
            spent=recorded if recorded is not None else usage_from_dict(state.get("spent")),
            parent=active_budget(),  # a compile inside a compile (Auto's members) spends from both
            ledger=ledger,
        )
        run = CompileRun(seed=seed, budget=budget, checkpoint=ckpt, state=state, progress=progress)
        if not resumed:
            run.save({})  # the ledger now belongs to a started compile: a kill before the first save resumes
        total = estimate.program_runs or None
        started = time.perf_counter()
        try:
            with _progress.bar(total, self.name, enabled=progress and total is not None, score_label="best") as shown:
                if shown is not None:
                    budget.on_charge = shown.charge
                with budget.activate():
                    compiled = self._compile(program, train, val, run)
        finally:
            budget.on_charge = None
            if ledger is not None:
                ledger.close()
        if budget.failed and not budget.answered:
            first = budget.first_failure
            raise CompileError(
                f"{self.name}: every LM call of this compile failed ({budget.failed} of {budget.failed}), so "
                f"there is no program to return; the first error: {type(first).__name__}: {first}. "
                "Check the LM (its URL, model name, key or server) and compile again",
                failed=budget.failed,
                first=first,
            )
        if budget.stopped:
            log.warning(
                "%s stopped early at its budget (%s; %s); returning the best program so far",
                self.name,
                budget.reason,
                budget.spent,
            )
        spent = budget.spent
        compiled.compile_usage = spent
        compiled.compile_wall_s = time.perf_counter() - started
        compiled.provenance = provenance(
            optimizer=self.name,
            settings=settings,
            seed=seed,
            # What compiling this program takes, whether the calls reached a backend this time or
            # came from the cache: a rerun on the same cache writes the same artifact.
            lm_calls=spent.calls + spent.cache_hits,
            tokens=spent.total_tokens + spent.cached_tokens,
            stopped_early=budget.stopped,
            **({"stop_reason": budget.reason} if budget.stopped else {}),
            trainset_sha256=fingerprint["trainset"],
            trainset_size=len(train),
            valset_sha256=fingerprint["valset"],
            valset_size=None if val is None else len(val),
            scores=run.scores,
            estimate=estimate.to_dict(),
            oobleck_version=__version__,
            **({"notes": run.notes} if run.notes else {}),
            **_decoding_record(compiled),
        )
        return compiled

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{self.name}({inner})"


def _with_batch_calibration_rows(program: Module, train: Sequence[Example]) -> Module:
    """A copy whose batch-calibrated predictors refit their prior on training inputs.

    Every candidate a search builds (other demos, other instructions) then fits its own prior
    on the same unlabelled training inputs the first time it scores, so candidates are
    compared calibrated as they will be used (issue 17); the program is returned as is when
    no predictor asks for batch calibration without rows.
    """
    if not any(p.calibration == "batch" and not p.calibration_rows for _, p in program.named_predictors()):
        return program
    from oobleck.calibration import with_calibration_rows

    return with_calibration_rows(program.copy(), [row.inputs() for row in train])
