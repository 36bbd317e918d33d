"""Predict's score mode: the prior a scored call divides out, the call's steps, the saved state.

A scored predictor (``mode="score"``, or ``"auto"`` resolving to it) answers through
:meth:`LabelScoring.answer <oobleck.label_scoring.LabelScoring.answer>`, with a label prior
(:mod:`oobleck.calibration`) divided out. Which prior, under the predictor's current prompt:

- the prior :func:`oobleck.calibrate` fitted, if it was fitted under this prompt;
- otherwise (none fitted, or the demos or instructions changed since), for ``"contextual"``:
  estimated on the first call from the content-free inputs; for ``"batch"``: refit on the
  predictor's ``calibration_rows`` (a ConfigError without them);
- none when calibration is off (``calibration=None``, or a named ``mode="score"`` with the
  default calibration).

An estimated prior costs calls, counted in the usage of the call that estimated it, and is
remembered in the :class:`PriorMemo` a predictor shares with its copies.

:class:`ScoreMode` is the strategy: the predictor hands it its settings (:class:`ScoreSettings`),
its memo, the LM and its hooks (:class:`~oobleck.label_scoring.ScoringHooks`), and drives the
generator :meth:`ScoreMode.steps` returns like any other call. Nothing here reaches back into
the predictor. :func:`dump_state` and :func:`load_state` write and read (checking every value)
the scoring settings an artifact keeps.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic

from oobleck import _types
from oobleck.adapters.base import Adapter
from oobleck.calibration import CONTENT_FREE, Calibration, CalibrationMethod
from oobleck.errors import ArtifactError, ConfigError
from oobleck.example import Prediction
from oobleck.label_scoring import LabelScoring, ScoreNorm, ScoringHooks, json_labels, require_plan
from oobleck.lm.base import LM
from oobleck.lm.types import LMRequest, LMResponse, Usage
from oobleck.signature import Signature

__all__ = [
    "CalibrationSetting",
    "Mode",
    "PriorMemo",
    "ScoreMode",
    "ScoreSettings",
    "check_settings",
    "dump_auto_state",
    "dump_state",
    "load_state",
    "prior_key",
    "prompt_fingerprint",
]

Mode = Literal["auto", "generate", "score"]
CalibrationSetting = Literal["auto", "contextual", "batch"] | None

_MODES = ("auto", "generate", "score")
_CALIBRATIONS = ("auto", "contextual", "batch", None)


def check_settings(signature: Signature, mode: str, calibration: str | None, score_norm: str) -> None:
    """Raise unless the scoring settings a predictor is given make sense for ``signature``.

    Raises:
        ConfigError: an unknown mode, calibration or score normalisation, or ``mode="score"``
            on a signature without labels to score.
    """
    if mode not in _MODES:
        raise ConfigError(f"mode must be 'auto', 'generate' or 'score', got {mode!r}")
    if mode == "score":
        require_plan(signature)  # raises unless there are labels to score
    if calibration not in _CALIBRATIONS:
        raise ConfigError(f"calibration must be 'auto', 'contextual', 'batch' or None, got {calibration!r}")
    if score_norm not in ("sum", "mean"):
        raise ConfigError(f"score_norm must be 'sum' or 'mean', got {score_norm!r}")


@dataclass(slots=True)
class PriorMemo:
    """The priors a predictor estimated on first use; shared with its copies.

    Attributes:
        by_requests: each prior by what it depends on (the LM, its settings, the exact requests
            it was estimated from; see :func:`prior_key`), so a copy under other demos finds
            none of its own and estimates again.
        by_prompt: the last prior estimated for each ``"method:prompt fingerprint"``: what an
            artifact saves.
    """

    by_requests: dict[str, Calibration] = field(default_factory=dict)
    by_prompt: dict[str, Calibration] = field(default_factory=dict)
    locks: dict[str, threading.Lock] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> PriorMemo:
        """Shared, not copied: every entry is keyed by all it depends on (and locks cannot copy)."""
        return self


@dataclass(frozen=True, slots=True)
class ScoreSettings:
    """A predictor's scoring settings, as they are when it is called or saved.

    Attributes:
        owner: the predictor, named in error messages (nothing else is read from it).
        mode: its ``mode`` (an ``"auto"`` predictor calibrates by default, a named ``"score"``
            does not).
        calibration: its ``calibration``.
        score_norm: its ``score_norm``.
        fitted: the prior :func:`oobleck.calibrate` fitted (``calibration_state``), or None.
        rows: the inputs a batch prior is refit on (``calibration_rows``).
    """

    owner: object
    mode: Mode
    calibration: CalibrationSetting
    score_norm: ScoreNorm
    fitted: Calibration | None
    rows: Sequence[Mapping[str, Any]] = ()

    @property
    def method(self) -> CalibrationMethod | None:
        """The calibration in use: a method, or None (raw probabilities)."""
        if self.calibration != "auto":
            return self.calibration
        if self.fitted is not None:
            return self.fitted.method
        return "contextual" if self.mode == "auto" else None

    def current(
        self, memo: PriorMemo, prompt: str, labels: Mapping[str, Sequence[Any]] | None = None
    ) -> Calibration | None:
        """The prior for ``prompt``: the fitted one unless the prompt changed, else one estimated under it.

        ``labels`` (the signature's, as JSON values), when given, must be the fitted prior's too.
        """
        method = self.method
        if method is None:
            return None
        fitted = self.fitted
        if fitted is not None and fitted.method == method and not _stale(fitted, prompt, labels):
            return fitted
        return memo.by_prompt.get(f"{method}:{prompt}")

    def prior(
        self, prompt: str, labels: Mapping[str, Sequence[Any]] | None = None
    ) -> Calibration | Literal["estimate", "refit"] | None:
        """The prior to divide out under ``prompt``: fitted, to estimate, to refit, or none.

        ``"estimate"``: contextual, from the content-free inputs. ``"refit"``: batch, on
        :attr:`rows`, after the prompt changed (or when only rows were given). A fitted prior
        whose labels are not ``labels`` (the signature's, as JSON values) is stale too, even
        when it was saved without its prompt.

        Raises:
            ConfigError: a batch prior fitted under another prompt or for other labels, or none
                fitted, with no rows to refit on; a fitted prior of another score normalisation.
        """
        method = self.method
        if method is None:
            return None
        fitted = self.fitted
        if fitted is not None and fitted.method == method and _stale(fitted, prompt, labels):
            if method == "contextual":
                return "estimate"
            if self.rows:
                return "refit"
            raise ConfigError(
                f"the batch calibration of {self.owner!r} was fitted under another prompt or for other labels "
                "(its demos, instructions or signature changed since): refit it with "
                "program = oobleck.calibrate(program, rows)"
            )
        if fitted is not None and fitted.method == method:
            if fitted.score_norm != self.score_norm:
                raise ConfigError(
                    f"the calibration of {self.owner!r} was fitted with score_norm={fitted.score_norm!r}, the predictor "
                    f"scores with {self.score_norm!r}: refit it with oobleck.calibrate(...)"
                )
            return fitted
        if method == "batch":
            if self.rows:
                return "refit"
            raise ConfigError(
                f"{self.owner!r} has calibration='batch' but no fitted prior: fit it on unlabelled rows with "
                "program = oobleck.calibrate(program, rows), or use calibration='contextual' (needs no data)"
            )
        return "estimate"


@dataclass(frozen=True, slots=True)
class ScoreMode:
    """One scored call: the prior to divide out (estimated first if need be), then the answer.

    Attributes:
        scoring: the labels' requests and distributions (signature, adapter, score_norm).
        settings: the predictor's scoring settings.
        memo: the predictor's estimated priors (shared with its copies).
        hooks: the predictor's request, generation and trace.
        lm: the LM the call goes to (an estimated prior belongs to it).
        prompt: the predictor's prompt fingerprint under the adapter in use.
    """

    scoring: LabelScoring
    settings: ScoreSettings
    memo: PriorMemo
    hooks: ScoringHooks
    lm: LM
    prompt: str

    def steps(self, inputs: Mapping[str, Any]) -> Generator[LMRequest, LMResponse, Prediction]:
        """The call's steps; what estimating the prior cost is counted in the answer's usage."""
        prior = self.settings.prior(self.prompt, json_labels(self.scoring.signature))
        spent = Usage()
        if prior == "estimate":
            prior, spent = yield from self.estimate("contextual")
        elif prior == "refit":
            prior, spent = yield from self.estimate("batch")
        pred = yield from self.scoring.answer(inputs, self.hooks, prior, final=True)
        return pred.with_usage(spent + pred.usage) if spent.calls or spent.cache_hits else pred

    def estimate(self, method: CalibrationMethod) -> Generator[LMRequest, LMResponse, tuple[Calibration, Usage]]:
        """The prior for this prompt on this LM, estimated once and remembered.

        Contextual on the content-free inputs, batch on the settings' rows. Each input costs
        one scoring call (plus one generating call for free-text outputs), traced without
        outputs (no demo is ever made of one) and counted in usage. Threads asking for the same
        prior at once wait for the first to estimate it; coroutines on one event loop never wait
        (they share its thread), so there concurrent first calls may each estimate it, with the
        same values.
        """
        if method == "contextual":
            inputs = [dict.fromkeys(self.scoring.signature.input_fields, text) for text in CONTENT_FREE]
        else:
            inputs = [dict(row) for row in self.settings.rows]
        key = prior_key(self.lm, [self.hooks.request(values) for values in inputs], self.settings.score_norm)
        fingerprint = f"{method}:{self.prompt}"
        known = self.memo.by_requests.get(key)
        if known is not None:
            self.memo.by_prompt.setdefault(fingerprint, known)
            return known, Usage()
        lock = self.memo.locks.setdefault(key, threading.Lock())
        held = lock.acquire(blocking=not _in_event_loop())
        try:
            known = self.memo.by_requests.get(key)
            if known is not None:
                self.memo.by_prompt.setdefault(fingerprint, known)
                return known, Usage()
            fitted, spent = yield from self._fit(method, inputs)
        finally:
            if held:
                lock.release()
        fitted = self.memo.by_requests.setdefault(key, fitted)
        self.memo.by_prompt[fingerprint] = fitted
        return fitted, spent

    def _fit(
        self, method: CalibrationMethod, inputs: Sequence[Mapping[str, Any]]
    ) -> Generator[LMRequest, LMResponse, tuple[Calibration, Usage]]:
        distributions = []
        spent = Usage()
        for values in inputs:
            pred = yield from self.scoring.answer(values, self.hooks, None, final=False)
            assert pred.raw_probabilities is not None
            distributions.append({n: list(d.values()) for n, d in pred.raw_probabilities.items()})
            spent = spent + pred.usage
        fitted = Calibration.fit(
            method,
            distributions,
            labels=json_labels(self.scoring.signature),
            content_free=CONTENT_FREE,
            score_norm=self.settings.score_norm,
            prompt=self.prompt,
        )
        return fitted, spent


def _stale(fitted: Calibration, prompt: str, labels: Mapping[str, Sequence[Any]] | None) -> bool:
    """Whether ``fitted`` was fitted under another prompt, or (when ``labels`` are given) for other labels."""
    return fitted.prompt not in ("", prompt) or not _fits_labels(fitted, labels)


def _fits_labels(fitted: Calibration, labels: Mapping[str, Sequence[Any]] | None) -> bool:
    """Whether ``fitted`` is a prior over ``labels`` (as JSON: ``true`` is not ``1``); None: unknown, yes."""
    if labels is None:
        return True
    as_json = functools.partial(json.dumps, sort_keys=True, default=repr)
    return as_json({k: list(v) for k, v in fitted.labels.items()}) == as_json({k: list(v) for k, v in labels.items()})


def _in_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop (never, if asyncio was not imported)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def prompt_fingerprint(
    signature: Signature, demos: Sequence[Mapping[str, Any]], adapter: Adapter | None, score_norm: str
) -> str:
    """sha256 of what a label prior depends on besides the LM (see ``Predict.prompt_fingerprint``)."""
    blob = {
        "signature": str(signature),
        "instructions": signature.instructions,
        "demos": [d.to_dict() if hasattr(d, "to_dict") else dict(d) for d in demos],
        "adapter": None if adapter is None else [adapter.name, adapter.options()],
        "score_norm": score_norm,
    }
    text = json.dumps(blob, sort_keys=True, default=_fingerprint_text, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fingerprint_text(value: Any) -> Any:
    """A demo value that is not JSON, as fingerprinted: ``str(value)``, but sets sorted.

    ``str`` prints a set in its iteration order, which changes per process (``PYTHONHASHSEED``);
    a value holding one is fingerprinted by its JSON with the sets sorted instead. Other values
    keep ``str`` (the fingerprints saved with their priors stay the same).
    """
    if isinstance(value, (set, frozenset)):
        return _types.stable_order(value)
    if isinstance(value, pydantic.BaseModel) and _holds_set(value):
        return _types.to_jsonable(value)
    return str(value)


def _holds_set(value: Any, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if isinstance(value, (set, frozenset)):
        return True
    if isinstance(value, pydantic.BaseModel):
        value = {**value.__dict__, **(value.model_extra or {})}
    if isinstance(value, dict):
        return any(_holds_set(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_set(v, depth + 1) for v in value)
    return False


def prior_key(lm: LM, requests: Sequence[LMRequest], score_norm: str) -> str:
    """What an estimated prior depends on: the LM and the exact requests it was estimated from.

    The requests hold the prompt, the demos, the adapter, the decoding settings and the soft
    prompt.
    """
    settings = getattr(lm, "settings", {})
    blob = json.dumps(
        {"lm": lm.identity, "settings": settings, "norm": score_norm, "requests": [r.key_data() for r in requests]},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- artifacts

#: The keys of a predictor's saved state that belong to score mode.
STATE_KEYS = frozenset({"mode", "calibration", "score_norm", "calibration_state"})


def _saved_prior(
    settings: ScoreSettings, memo: PriorMemo, prompt: str, labels: Mapping[str, Sequence[Any]] | None
) -> Calibration | None:
    """The prior an artifact keeps: the one for ``prompt``, else the fitted one if it is over ``labels``.

    A prior fitted under another prompt is kept with that prompt (the loaded program refits or
    estimates again when called, as this one would); one over other labels (the signature
    changed since) is not: the artifact could not be loaded with it.
    """
    if settings.method is None:
        return None
    state = settings.current(memo, prompt, labels)
    fitted = settings.fitted
    if state is None and fitted is not None and fitted.method == settings.method and _fits_labels(fitted, labels):
        state = fitted
    return state


def dump_state(
    settings: ScoreSettings, memo: PriorMemo, prompt: str, labels: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, Any]:
    """What an artifact keeps of a predictor named ``mode="score"``.

    The mode, the calibration in use, and the prior for ``prompt`` (:meth:`ScoreSettings.current`),
    else the one fitted under another prompt, when there is one over ``labels`` (the
    signature's, as JSON values).

    Raises:
        ConfigError: a batch calibration with no prior over the signature's labels (never
            fitted, or fitted before the labels changed): the artifact could not be loaded.
    """
    extra: dict[str, Any] = {"mode": "score"}
    method = settings.method
    if method is not None:
        extra["calibration"] = method
    if settings.score_norm != "sum":
        extra["score_norm"] = settings.score_norm
    state = _saved_prior(settings, memo, prompt, labels)
    if state is not None:
        extra["calibration_state"] = state.to_data()
    elif method == "batch":
        raise ConfigError(
            f"{settings.owner!r} has calibration='batch' but no prior fitted for its labels (never fitted, or its "
            "signature changed since), and an artifact must hold it: fit it first with "
            "program = oobleck.calibrate(program, rows), or save it with calibration='contextual' or None"
        )
    return extra


def dump_auto_state(
    settings: ScoreSettings, memo: PriorMemo, prompt: str, labels: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, Any]:
    """What an artifact keeps of a ``mode="auto"`` predictor with the default adapter.

    The mode stays ``"auto"`` (not written): the loaded program scores or generates as the LM
    it is called with allows, exactly as the program did before it was saved. Written only
    when they are not the defaults: the calibration setting, the score normalisation, and the
    prior in use under ``prompt`` (fitted by :func:`oobleck.calibrate`, or estimated on a first
    scored call), which the loaded program uses when it scores under the same prompt.
    """
    extra: dict[str, Any] = {}
    if settings.calibration != "auto":
        extra["calibration"] = settings.calibration
    if settings.score_norm != "sum":
        extra["score_norm"] = settings.score_norm
    # the prior under this prompt, else the fitted one (saved without its LM, the prompt here
    # is the one for no LM: the fitted prior keeps the prompt it was fitted under), if it is
    # over the signature's labels
    state = _saved_prior(settings, memo, prompt, labels)
    if state is not None:
        extra["calibration_state"] = state.to_data()
    return extra


def load_state(
    extra: Mapping[str, Any], signature: Signature
) -> tuple[Mode, CalibrationSetting, ScoreNorm, Calibration | None]:
    """Read what :func:`dump_state` or :func:`dump_auto_state` wrote (untrusted: every value is checked first).

    Returns:
        The mode, the calibration, the score normalisation and the saved prior (or None).

    Raises:
        ArtifactError: a value out of range, a prior that does not fit the signature's labels
            or the calibration, or calibration settings on a predictor that does not score.
    """
    mode = extra.get("mode", "auto")
    if mode not in _MODES:
        raise ArtifactError(f"mode must be 'auto', 'generate' or 'score', got {mode!r}")
    calibration = extra.get("calibration", "auto")
    if calibration not in _CALIBRATIONS:
        raise ArtifactError(f"calibration must be 'contextual', 'batch' or null, got {calibration!r}")
    score_norm = extra.get("score_norm", "sum")
    if score_norm not in ("sum", "mean"):
        raise ArtifactError(f"score_norm must be 'sum' or 'mean', got {score_norm!r}")
    if mode == "generate":
        if set(extra) & {"calibration", "score_norm", "calibration_state"}:
            raise ArtifactError("calibration settings are saved only for a predictor in mode 'score' or 'auto'")
        return mode, calibration, score_norm, None
    state = None
    if "calibration_state" in extra:
        try:
            labels = json_labels(signature)
        except ConfigError as exc:
            raise ArtifactError(str(exc)) from None
        state = Calibration.from_data(extra["calibration_state"], labels=labels, score_norm=score_norm)
        if calibration != "auto" and state.method != calibration:
            raise ArtifactError(
                f"the saved prior was fitted by {state.method!r} calibration but calibration is {calibration!r}"
            )
    elif mode == "score":
        try:
            json_labels(signature)
        except ConfigError as exc:
            raise ArtifactError(str(exc)) from None
        if calibration == "batch":
            raise ArtifactError("calibration 'batch' was saved without its fitted prior (calibration_state)")
    return mode, calibration, score_norm, state
