"""Predict: the one step that calls an LM.

Data flows one way: inputs → Predict → Adapter.render → LMRequest → LM → LMResponse →
Adapter.parse → Prediction. The sync and async paths drive the same generator of requests, so
parsing, parse-repair retries, usage and tracing behave identically in both.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import functools
import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, Literal

from oobleck import label_scoring
from oobleck.adapters import default_adapter
from oobleck.adapters._values import Placeholder, placeholder
from oobleck.adapters.base import Adapter
from oobleck.calibration import CONTENT_FREE, Calibration
from oobleck.context import current
from oobleck.errors import ArtifactError, ConfigError, InputError, LMError, ParseError
from oobleck.example import Example, Prediction
from oobleck.lm.base import ANSWER_WRITER, LM, Capabilities
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.types import LMRequest, LMResponse, Message, Usage
from oobleck.module import RENDERING, Module, RenderedCall
from oobleck.signature import Signature, ensure_signature
from oobleck.trace import TraceEntry, emit
from oobleck.trace import active as recording_active

log = logging.getLogger(__name__)

__all__ = ["Predict"]

_CONFIG_KEYS = frozenset(
    {"temperature", "max_tokens", "stop", "n", "seed", "top_p", "logprobs", "top_logprobs", "extra"}
)


class Predict(Module):
    """One LM call: render the signature with demos and inputs, call the LM, parse the answer.

    Args:
        signature: a signature string, Signature, or Signature subclass.
        demos: examples shown before the inputs (each a mapping with input and output fields).
        lm: this predictor's LM; falls back to ``oobleck.context(lm=...)``.
        adapter: the prompt format; falls back to the context, then to the default for the
            LM's capabilities: a short prompt with a constrained JSON answer where the backend
            takes a JSON schema, ChatAdapter elsewhere (see :meth:`adapter_choice`).
        max_retries: on a parse failure, ask again this many times showing the LM the error
            (each retry is counted in usage and the trace). Default: the context's, else 0.
        mode: ``"generate"``: the LM writes the answer and the adapter parses it.
            ``"score"``: each label of the Literal/Enum/bool outputs is written as the adapter
            writes answers and scored by the backend (:mod:`oobleck.label_scoring`); the most
            likely label is the answer and the prediction carries the label distribution
            (``pred.probabilities``). Free-text outputs before the labels are generated
            first. Needs a backend with ``capabilities.scoring``.
            ``"auto"`` (default): decided at call time (see :meth:`mode_choice`): score when
            every output is a label, the backend scores, and no adapter or sampling was named;
            generate otherwise.
        calibration: how the label prior is removed in score mode (:mod:`oobleck.calibration`).
            ``"auto"`` (default): the fitted calibration if :func:`oobleck.calibrate` fitted
            one; else, when score mode was the default choice, contextual calibration
            estimated on the first call (one scoring call per content-free input, counted in
            that call's usage, remembered per prompt and LM); else none (naming
            ``mode="score"`` gives raw scores unless a calibration is named too).
            ``"contextual"``: the fitted contextual prior, else estimated on the first call.
            ``"batch"``: the prior fitted by ``oobleck.calibrate(program, rows)`` (required).
            None: raw label probabilities.
        score_norm: ``"sum"`` (default): a label's score is its tokens' summed log-probability;
            ``"mean"``: their mean (long labels are not penalised for their length).
        soft_prompt: trained virtual tokens sent with every call (set by the optimizers in
            :mod:`oobleck.soft`); needs a backend with ``capabilities.soft_prompts``.
        **config: decoding parameters: temperature, max_tokens, stop, n, seed, top_p,
            logprobs, top_logprobs, extra.

    Raises:
        ConfigError: an unknown decoding parameter, or ``mode="score"`` on a signature
            without a Literal/Enum/bool output (or with free text after one).

    Example:
        >>> from oobleck import FakeLM
        >>> qa = Predict("question -> answer: int", lm=FakeLM([{"answer": 4}]))
        >>> qa(question="2+2?").answer
        4
    """

    #: Why ``adapter`` was set, when it came from somewhere that knows (an artifact records
    #: the reason its adapter was chosen, and loading restores it with the adapter). Setting
    #: ``adapter`` again clears it.
    adapter_reason: str | None = None

    def __init__(
        self,
        signature: str | Signature | type[Signature],
        *,
        demos: Sequence[Mapping[str, Any]] = (),
        lm: LM | None = None,
        adapter: Adapter | None = None,
        max_retries: int | None = None,
        mode: Literal["auto", "generate", "score"] = "auto",
        calibration: Literal["auto", "contextual", "batch"] | None = "auto",
        score_norm: label_scoring.ScoreNorm = "sum",
        soft_prompt: SoftPrompt | None = None,
        **config: Any,
    ) -> None:
        unknown = set(config) - _CONFIG_KEYS
        if unknown:
            raise ConfigError(f"unknown decoding parameter(s) {sorted(unknown)}; known: {sorted(_CONFIG_KEYS)}")
        self.signature = ensure_signature(signature)
        self.demos: list[Example] = [d if isinstance(d, Example) else Example(d) for d in demos]
        self.lm = lm
        self.adapter = adapter
        self.max_retries = max_retries
        self.config: dict[str, Any] = dict(config)
        if mode not in _MODES:
            raise ConfigError(f"mode must be 'auto', 'generate' or 'score', got {mode!r}")
        if mode == "score":
            label_scoring.require_plan(self.signature)  # raises unless there are labels to score
        if calibration not in _CALIBRATIONS:
            raise ConfigError(f"calibration must be 'auto', 'contextual', 'batch' or None, got {calibration!r}")
        if score_norm not in ("sum", "mean"):
            raise ConfigError(f"score_norm must be 'sum' or 'mean', got {score_norm!r}")
        if soft_prompt is not None and not isinstance(soft_prompt, SoftPrompt):
            raise ConfigError(f"soft_prompt must be a SoftPrompt, got {type(soft_prompt).__name__}")
        self.mode = mode
        self.calibration = calibration
        self.score_norm = score_norm
        #: The prior fitted by :func:`oobleck.calibrate` (saved in artifacts), or None.
        self.calibration_state: Calibration | None = None
        #: Unlabelled inputs a batch prior is refitted on when the prompt changes (in memory).
        self.calibration_rows: list[dict[str, Any]] = []
        self.soft_prompt = soft_prompt
        # Priors estimated on first use, by LM and prompt; shared by copies (a key names
        # everything the prior depends on, so a copy under other demos finds none of its own).
        self._priors: dict[str, Calibration] = {}
        # The last prior estimated for each prompt fingerprint and method: what is saved.
        self._estimated: dict[str, Calibration] = {}
        self._prior_locks: dict[str, threading.Lock] = {}

    # ---- parameters ----

    @property
    def instructions(self) -> str:
        """The instruction inside the signature."""
        return self.signature.instructions

    def named_predictors(self) -> list[tuple[str, Predict]]:
        """A bare Predict is its own only predictor, named ``"self"``."""
        return [("self", self)]

    def copy(self) -> Predict:
        """A copy with its own demos list and config (LM and adapter shared)."""
        new = _copy.copy(self)
        new.demos = list(self.demos)
        new.config = dict(self.config)
        new.calibration_rows = list(self.calibration_rows)
        return new

    def prompt_fingerprint(self, adapter: Adapter | None = None) -> str:
        """sha256 of what a label prior depends on besides the LM: signature, instructions,
        demos, the adapter in use (with its options) and the score normalisation.

        Args:
            adapter: the adapter in use, if the caller resolved it already.
        """
        if adapter is None:
            try:
                adapter = self.resolve_adapter()
            except ConfigError:  # no LM here: the adapter named on the predictor, if any
                adapter = self.adapter
        blob = {
            "signature": str(self.signature),
            "instructions": self.signature.instructions,
            "demos": [d.to_dict() if hasattr(d, "to_dict") else dict(d) for d in self.demos],
            "adapter": None if adapter is None else [adapter.name, adapter.options()],
            "score_norm": self.score_norm,
        }
        text = json.dumps(blob, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        extra = (f", mode={self.mode!r}" if self.mode != "auto" else "") + (
            f", soft_prompt={self.soft_prompt!r}" if self.soft_prompt is not None else ""
        )
        if self.adapter is not None:
            extra += f", adapter={self.adapter.name!r}"
        return f"Predict({str(self.signature)!r}, demos={len(self.demos)}{extra})"

    # ---- artifact state beyond the JSON record: scoring, calibration, the soft prompt ----

    def dump_extra(self, files: Any) -> dict[str, Any] | None:
        """Score mode, calibration and soft prompt for an artifact (tensors go to a side file).

        The mode is saved as resolved here: an ``"auto"`` predictor that scores on its LM is
        saved as ``mode="score"`` with the calibration it uses, so the loaded program (whose
        adapter is fixed by the artifact) answers the same way.
        """
        extra: dict[str, Any] = {}
        if self.mode == "score" or (self.mode == "auto" and self.mode_choice()[0] == "score"):
            extra["mode"] = "score"
            calibration = self._effective_calibration()
            if calibration is not None:
                extra["calibration"] = calibration
            if self.score_norm != "sum":
                extra["score_norm"] = self.score_norm
            state = self._current_state(calibration)
            if state is not None:
                extra["calibration_state"] = state.to_data()
        prompt = self.soft_prompt
        if prompt is not None:
            name = f"soft-{prompt.sha256[:24]}.safetensors"
            if name not in files.names():  # two predictors may share one soft prompt
                files.write(name, prompt.data)
            extra["soft_prompt"] = {**prompt.describe(), "file": name}
        return extra or None

    def load_extra(self, extra: Mapping[str, Any], files: Any) -> None:
        """Restore what :meth:`dump_extra` saved (untrusted: every value is checked first)."""
        unknown = sorted(set(extra) - {"mode", "calibration", "score_norm", "calibration_state", "soft_prompt"})
        if unknown:
            raise ArtifactError(f"unknown predictor state {unknown}")
        mode = extra.get("mode", "auto")
        if mode not in ("auto", "generate", "score"):
            raise ArtifactError(f"mode must be 'generate' or 'score', got {mode!r}")
        calibration = extra.get("calibration", "auto")
        if calibration not in ("auto", "contextual", "batch"):
            raise ArtifactError(f"calibration must be 'contextual' or 'batch', got {calibration!r}")
        score_norm = extra.get("score_norm", "sum")
        if score_norm not in ("sum", "mean"):
            raise ArtifactError(f"score_norm must be 'sum' or 'mean', got {score_norm!r}")
        state = None
        if mode == "score":
            try:
                labels = label_scoring.json_labels(self.signature)
            except ConfigError as exc:
                raise ArtifactError(str(exc)) from None
            if "calibration_state" in extra:
                state = Calibration.from_data(extra["calibration_state"], labels=labels, score_norm=score_norm)
                if state.method != calibration:
                    raise ArtifactError(f"the saved prior was fitted by {state.method!r} calibration but calibration is {calibration!r}")
            elif calibration == "batch":
                raise ArtifactError("calibration 'batch' was saved without its fitted prior (calibration_state)")
        elif set(extra) & {"calibration", "score_norm", "calibration_state"}:
            raise ArtifactError("calibration settings are saved only for a predictor in mode 'score'")
        prompt = None
        described = extra.get("soft_prompt")
        if described is not None:
            if not isinstance(described, Mapping) or not isinstance(described.get("file"), str):
                raise ArtifactError("soft_prompt must be a description with the name of its side file")
            description = {k: v for k, v in described.items() if k != "file"}
            try:
                prompt = SoftPrompt.from_description(description, files.read(described["file"]))
            except ConfigError as exc:
                raise ArtifactError(f"unusable soft prompt: {exc}") from None
        self.mode = mode
        self.calibration = calibration
        self.score_norm = score_norm
        self.calibration_state = state
        self.soft_prompt = prompt

    @property
    def adapter(self) -> Adapter | None:
        """The adapter named for this predictor (None: the context's, else the default)."""
        return self._adapter

    @adapter.setter
    def adapter(self, value: Adapter | None) -> None:
        self._adapter = value
        self.adapter_reason = None

    # ---- resolution ----

    def resolve_lm(self) -> LM:
        """The LM this predictor uses here: its own, else the context's."""
        lm = self.lm or current().lm
        if lm is None:
            raise ConfigError(
                f"no LM for Predict({str(self.signature)!r}): pass Predict(..., lm=...), "
                "call program.set_lm(...), or wrap the call in `with oobleck.context(lm=...)`"
            )
        return lm

    def resolve_adapter(self, lm: LM | None = None) -> Adapter:
        """The adapter this predictor uses here (see :meth:`adapter_choice`)."""
        if self.adapter is not None:
            return self.adapter
        settings = current()
        if settings.adapter is not None:
            return settings.adapter
        scored = self.mode == "auto" and self.mode_choice(lm)[0] == "score"  # a named mode keeps its format
        return default_adapter(_capabilities(lm or self.lm or settings.lm), scored=scored)[0]

    def adapter_choice(self, lm: LM | None = None) -> tuple[Adapter, str]:
        """The adapter this predictor uses here, and why.

        Its own adapter, else the context's, else the default for its LM's capabilities
        (:func:`oobleck.adapters.default_adapter`: constrained JSON where the backend declares
        ``json_schema``, ChatAdapter elsewhere).

        Args:
            lm: the LM to decide for (default: the predictor's, else the context's).

        Example:
            >>> from oobleck import FakeLM
            >>> Predict("q -> a", lm=FakeLM()).adapter_choice()[1]
            'default for a backend without structured output: field markers in plain chat'
        """
        if self.adapter is not None:
            return self.adapter, self.adapter_reason or "named on the predictor"
        settings = current()
        if settings.adapter is not None:
            return settings.adapter, "named in oobleck.context"
        scored = self.mode == "auto" and self.mode_choice(lm)[0] == "score"  # a named mode keeps its format
        return default_adapter(_capabilities(lm or self.lm or settings.lm), scored=scored)

    def mode_choice(self, lm: LM | None = None) -> tuple[Literal["generate", "score"], str]:
        """Whether this predictor generates or scores its labels here, and why.

        A named ``mode`` wins. ``"auto"`` scores when every output is a label (Literal, Enum,
        bool), the backend declares ``capabilities.scoring``, no adapter is set (on the
        predictor or in the context) and ``n`` is at most 1 (see
        :func:`oobleck.label_scoring.choose_mode`).

        Args:
            lm: the LM to decide for (default: the predictor's, else the context's).

        Example:
            >>> from oobleck import FakeLM
            >>> Predict("q -> a: bool", lm=FakeLM()).mode_choice()[1]
            'generate: the backend cannot score completions (capabilities.scoring is False)'
        """
        if self.mode != "auto":
            return self.mode, f"{self.mode}: named on the predictor"  # type: ignore[return-value]
        settings = current()
        return label_scoring.choose_mode(
            self.signature,
            _capabilities(lm or self.lm or settings.lm),
            adapter_named=self.adapter is not None or settings.adapter is not None,
            config=self.config,
        )

    def _check_inputs(self, inputs: Mapping[str, Any]) -> None:
        expected = self.signature.input_fields
        if inputs.keys() == expected.keys():
            return
        missing = [k for k in expected if k not in inputs]
        unknown = [k for k in inputs if k not in expected]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing input(s) {missing}")
            if unknown:
                parts.append(f"unknown input(s) {unknown}")
            raise InputError(
                f"{'; '.join(parts)} for signature {self.signature}; expected exactly {list(expected)}"
            )

    # ---- rendering ----

    def render(self, **inputs: Any) -> list[Message]:
        """The exact messages this predictor sends for ``inputs`` (no LM call)."""
        self._check_inputs(inputs)
        return self.resolve_adapter().render(self.signature, demos=self.demos, inputs=inputs)

    def render_calls(self, **inputs: Any) -> list[RenderedCall]:
        """One RenderedCall named ``"self"`` (see Module.render_calls)."""
        adapter, reason = self.adapter_choice()
        return [RenderedCall("self", self.render(**inputs), adapter.name, reason)]

    def template(self) -> list[Message]:
        """The messages with ``{field}`` placeholders where the inputs go."""
        inputs = {name: Placeholder("{" + name + "}") for name in self.signature.input_fields}
        return self.resolve_adapter().render(self.signature, demos=self.demos, inputs=inputs)

    def request(self, **inputs: Any) -> LMRequest:
        """The exact LMRequest this predictor sends first for ``inputs`` (no LM call).

        In score mode: the request scoring the first label output, or, with free-text outputs
        before the labels, the request generating them.
        """
        self._check_inputs(inputs)
        lm = self.resolve_lm()
        adapter = self.resolve_adapter(lm)
        if self.mode_choice(lm)[0] != "score":
            return self._request(adapter, lm, inputs)
        self._check_scoring(lm)
        scoring = label_scoring.LabelScoring(self.signature, adapter, self.score_norm)
        base = self._request(adapter, lm, inputs)
        plan = scoring.plan
        return base if plan.text_fields else scoring.score_request(base, {}, plan.labels[0][0])

    def _request(self, adapter: Adapter, lm: LM, inputs: Mapping[str, Any]) -> LMRequest:
        """The generating request for ``inputs`` (score mode derives its requests from it)."""
        messages = adapter.render(self.signature, demos=self.demos, inputs=inputs)
        params = self._settings_params(adapter, lm)
        if self.soft_prompt is not None:
            if not lm.capabilities.soft_prompts:
                raise ConfigError(
                    f"Predict({str(self.signature)!r}) on {type(lm).__name__}: this predictor carries a trained "
                    f"soft prompt ({self.soft_prompt!r}), which {type(lm).__name__} cannot apply (it only sends "
                    "text). Run it on a TransformersLM of the model it was trained on, or drop the soft prompt "
                    "(predictor.soft_prompt = None) to use the hard prompt alone"
                )
            params["soft_prompt"] = self.soft_prompt
        params["adapter"] = f"{adapter.name}/{adapter.version}"
        settings = current()
        if settings.cache != "on":
            params["cache"] = settings.cache
        if settings.sample_index:
            params["sample_index"] = settings.sample_index
        return LMRequest(messages=tuple(messages), **params)

    def _settings_params(self, adapter: Adapter, lm: LM) -> dict[str, Any]:
        """Decoding parameters for a generating call: config plus the adapter's options."""
        params = dict(self.config)
        for key, value in adapter.request_options(self.signature, lm.capabilities).items():
            if key == "stop":
                params["stop"] = tuple(dict.fromkeys((*(params.get("stop") or ()), *value)))
            else:
                params.setdefault(key, value)
        return params

    # ---- calling ----

    def __call__(self, *args: Any, **inputs: Any) -> Prediction:
        if args:
            raise InputError(f"Predict takes inputs by name, e.g. predict({next(iter(self.signature.input_fields), 'x')}=...)")
        return self.forward(**inputs)

    async def acall(self, **inputs: Any) -> Prediction:
        """Call from async code."""
        return await self.aforward(**inputs)

    def forward(self, **inputs: Any) -> Prediction:
        """Call the LM and return the parsed prediction."""
        self._check_inputs(inputs)
        rendering = RENDERING.get()
        if rendering is not None:
            rendering.append((self, self.resolve_adapter().render(self.signature, demos=self.demos, inputs=inputs)))
            return self._placeholder()
        lm = self.resolve_lm()
        adapter = self.resolve_adapter(lm)
        steps = self._steps(adapter, lm, inputs)
        request = next(steps)
        with _answers_written_by(adapter, self.signature):
            while True:
                try:
                    response = lm.complete(request)
                except Exception as exc:
                    steps.throw(exc)  # records the failure, then re-raises it
                    raise
                try:
                    request = steps.send(response)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    async def aforward(self, **inputs: Any) -> Prediction:
        """Async form of :meth:`forward` (uses the backend's async client)."""
        self._check_inputs(inputs)
        lm = self.resolve_lm()
        adapter = self.resolve_adapter(lm)
        steps = self._steps(adapter, lm, inputs)
        request = next(steps)
        with _answers_written_by(adapter, self.signature):
            while True:
                try:
                    response = await lm.acomplete(request)
                except Exception as exc:
                    steps.throw(exc)
                    raise
                try:
                    request = steps.send(response)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    def _steps(self, adapter: Adapter, lm: LM, inputs: Mapping[str, Any]) -> Generator[LMRequest, LMResponse, Prediction]:
        """The call protocol without I/O: yields each request, receives its response.

        Sync and async callers drive the same generator, so parsing, parse-repair retries,
        usage and tracing behave identically in both.
        """
        if self.mode != "generate" and self.mode_choice(lm)[0] == "score":
            return (yield from self._score_steps(adapter, lm, inputs))
        request = self._request(adapter, lm, inputs)
        return (yield from self._attempts(adapter, inputs, request, self.signature, final=True))

    def _attempts(
        self, adapter: Adapter, inputs: Mapping[str, Any], request: LMRequest, signature: Signature, *, final: bool
    ) -> Generator[LMRequest, LMResponse, Prediction]:
        """Generate and parse ``signature``'s outputs, repairing parse failures (``final``: the
        call's answer; otherwise a step before scoring, traced without outputs)."""
        retries = self._max_retries()
        # Each attempt is traced with its own cost, so recorders that sum entries (a program's
        # usage meter, evaluate, a budget) count every call once; the prediction carries the
        # total of all attempts.
        spent = Usage()
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = yield request
            except Exception as exc:
                self._emit(inputs, None, request, None, _failed_usage(exc, attempt), exc)
                raise
            usage = response.usage
            if not usage.latency_s:
                usage = usage.with_latency(time.perf_counter() - started)
            if attempt and usage.calls:
                usage = usage + _ONE_RETRY  # a repair that reached a backend (not a cache hit)
            outcome = self._parse(adapter, inputs, request, response, usage, spent, signature, final)
            if not isinstance(outcome, ParseError):
                return outcome
            if attempt >= retries:
                raise outcome
            attempt += 1
            spent = spent + usage
            request = _repair(request, adapter.repair_messages(signature, response.text, outcome.reason))

    # ---- score mode (oobleck.label_scoring, oobleck.calibration) ----

    def _check_scoring(self, lm: LM) -> None:
        if not lm.capabilities.scoring:
            name = type(lm).__name__
            raise ConfigError(
                f"Predict({str(self.signature)!r}) on {name}: mode='score' needs a backend that scores "
                f"completions (capabilities.scoring: token log-probabilities of given text); {name} only "
                "generates. Use a backend that declares it (TransformersLM, ...), or mode='generate'"
            )

    def _score_steps(self, adapter: Adapter, lm: LM, inputs: Mapping[str, Any]) -> Generator[LMRequest, LMResponse, Prediction]:
        """Score the labels (after generating any free text first), calibrated as configured."""
        self._check_scoring(lm)
        scoring = label_scoring.LabelScoring(self.signature, adapter, self.score_norm)
        prior = self._fitted_prior()
        spent = Usage()
        if prior == "estimate":
            prior, spent = yield from self._estimated_prior(scoring, adapter, lm, "contextual")
        elif prior == "refit":
            prior, spent = yield from self._estimated_prior(scoring, adapter, lm, "batch")
        pred = yield from self._scored(scoring, adapter, lm, inputs, prior, final=True)
        return pred.with_usage(spent + pred.usage) if spent.calls or spent.cache_hits else pred

    def _effective_calibration(self) -> str | None:
        """The calibration in use when scoring: a method, or None."""
        if self.calibration != "auto":
            return self.calibration
        if self.calibration_state is not None:
            return self.calibration_state.method
        return "contextual" if self.mode == "auto" else None

    def _current_state(self, method: str | None) -> Calibration | None:
        """The prior fitted for this prompt by ``method``: the fitted state unless the prompt
        changed since, else the one estimated on first use under this prompt."""
        if method is None:
            return None
        state = self.calibration_state
        fingerprint = self.prompt_fingerprint()
        if state is not None and state.method == method and state.prompt in ("", fingerprint):
            return state
        return self._estimated.get(f"{method}:{fingerprint}")

    def _fitted_prior(self) -> Calibration | Literal["estimate", "refit"] | None:
        """The prior to divide out: fitted, to estimate now (contextual), to refit on the
        calibration rows (batch, after the prompt changed), or none."""
        method = self._effective_calibration()
        if method is None:
            return None
        state = self.calibration_state
        if state is not None and state.method == method and state.prompt not in ("", self.prompt_fingerprint()):
            if method == "contextual":
                return "estimate"
            if self.calibration_rows:
                return "refit"
            raise ConfigError(
                f"the batch calibration of {self!r} was fitted under another prompt (its demos or instructions "
                "changed since): refit it with program = oobleck.calibrate(program, rows)"
            )
        if state is not None and state.method == method:
            if state.score_norm != self.score_norm:
                raise ConfigError(
                    f"the calibration of {self!r} was fitted with score_norm={state.score_norm!r}, the predictor "
                    f"scores with {self.score_norm!r}: refit it with oobleck.calibrate(...)"
                )
            return state
        if method == "batch":
            if self.calibration_rows:
                return "refit"
            raise ConfigError(
                f"{self!r} has calibration='batch' but no fitted prior: fit it on unlabelled rows with "
                "program = oobleck.calibrate(program, rows), or use calibration='contextual' (needs no data)"
            )
        return "estimate"

    def _estimated_prior(
        self, scoring: label_scoring.LabelScoring, adapter: Adapter, lm: LM, method: Literal["contextual", "batch"]
    ) -> Generator[LMRequest, LMResponse, tuple[Calibration, Usage]]:
        """The prior for this prompt on this LM, estimated once and remembered: contextual on
        content-free inputs, batch on :attr:`calibration_rows`.

        Each input costs one scoring call (plus one generating call for free-text outputs),
        traced without outputs (no demo is ever made of one) and counted in usage. Concurrent
        first calls may each estimate it; they get the same values.
        """
        if method == "contextual":
            inputs = [dict.fromkeys(self.signature.input_fields, text) for text in CONTENT_FREE]
        else:
            inputs = [dict(row) for row in self.calibration_rows]
        key = _prior_key(lm, [self._request(adapter, lm, values) for values in inputs], self.score_norm)
        fingerprint = f"{method}:{self.prompt_fingerprint(adapter)}"
        known = self._priors.get(key)
        if known is not None:
            self._estimated.setdefault(fingerprint, known)
            return known, Usage()
        # Threads that ask for the same prior at once wait for the first to estimate it
        # instead of each paying for it. Under an event loop the coroutines share one thread,
        # so there they never wait (and may each estimate it, with the same values).
        lock = self._prior_locks.setdefault(key, threading.Lock())
        held = lock.acquire(blocking=not _in_event_loop())
        try:
            known = self._priors.get(key)
            if known is not None:
                self._estimated.setdefault(fingerprint, known)
                return known, Usage()
            fitted, spent = yield from self._estimate_prior(scoring, adapter, lm, method, inputs)
        finally:
            if held:
                lock.release()
        fitted = self._priors.setdefault(key, fitted)
        self._estimated[fingerprint] = fitted
        return fitted, spent

    def _estimate_prior(
        self,
        scoring: label_scoring.LabelScoring,
        adapter: Adapter,
        lm: LM,
        method: Literal["contextual", "batch"],
        inputs: Sequence[Mapping[str, Any]],
    ) -> Generator[LMRequest, LMResponse, tuple[Calibration, Usage]]:
        distributions = []
        spent = Usage()
        for values in inputs:
            pred = yield from self._scored(scoring, adapter, lm, values, None, final=False)
            assert pred.raw_probabilities is not None
            distributions.append({n: list(d.values()) for n, d in pred.raw_probabilities.items()})
            spent = spent + pred.usage
        fitted = Calibration.fit(
            method,
            distributions,
            labels=label_scoring.json_labels(self.signature),
            content_free=CONTENT_FREE,
            score_norm=self.score_norm,
            prompt=self.prompt_fingerprint(adapter),
        )
        return fitted, spent

    def _scored(
        self,
        scoring: label_scoring.LabelScoring,
        adapter: Adapter,
        lm: LM,
        inputs: Mapping[str, Any],
        prior: Calibration | None,
        *,
        final: bool,
    ) -> Generator[LMRequest, LMResponse, Prediction]:
        """One scored answer: free text generated first, then each label output in turn."""
        plan = scoring.plan
        base = self._request(adapter, lm, inputs)
        known: dict[str, Any] = {}
        spent = Usage()
        if plan.text_fields:
            texts = yield from self._attempts(adapter, inputs, base, scoring.text_signature(), final=False)
            known.update(texts.to_dict())
            spent = texts.usage
        raw: dict[str, dict[Any, float]] = {}
        calibrated: dict[str, dict[Any, float]] = {}
        for i, (name, _) in enumerate(plan.labels):
            request = scoring.score_request(base, known, name)
            started = time.perf_counter()
            try:
                response = yield request
            except Exception as exc:
                self._emit(inputs, None, request, None, _failed_usage(exc, 0), exc)
                raise
            usage = response.usage
            if not usage.latency_s:
                usage = usage.with_latency(time.perf_counter() - started)
            try:
                scores = scoring.scores(response, name)
            except LMError as exc:
                self._emit(inputs, None, request, response.text, usage, exc)
                raise
            labels = scoring.labels(name)
            probabilities = label_scoring.softmax(scores)
            adjusted = prior.apply(name, probabilities) if prior is not None else probabilities
            best = max(range(len(labels)), key=lambda j: (adjusted[j], -j))  # ties: the first label
            known[name] = labels[best]
            raw[name] = dict(zip(labels, probabilities))
            calibrated[name] = dict(zip(labels, adjusted))
            done = final and i == len(plan.labels) - 1
            self._emit(inputs, dict(known) if done else None, request, response.choices[best].text, usage, None)
            spent = spent + usage
        pred = Prediction({name: known[name] for name in self.signature.output_fields}, usage=spent)
        object.__setattr__(pred, "probabilities", calibrated)
        object.__setattr__(pred, "raw_probabilities", raw)
        return pred

    def _max_retries(self) -> int:
        if self.max_retries is not None:
            return self.max_retries
        return current().max_retries or 0

    def _parse(
        self,
        adapter: Adapter,
        inputs: Mapping[str, Any],
        request: LMRequest,
        response: LMResponse,
        usage: Usage,
        spent: Usage,
        signature: Signature,
        final: bool,
    ) -> Prediction | ParseError:
        completions: list[dict[str, Any]] = []
        first_error: ParseError | None = None
        notes: list[str] = []
        strict = current().on_truncation == "error"
        for i, choice in enumerate(response.choices):
            try:
                if choice.finish_reason == "length":
                    note = _truncated(signature, request, i)
                    if strict:
                        raise ParseError(note, raw=choice.text, field=None, signature=signature, reason="truncated at max_tokens")
                    notes.append(note)
                completions.append(adapter.parse(signature, choice.text))
            except ParseError as exc:
                first_error = first_error or exc
        if not response.choices:
            first_error = ParseError(
                "the LM returned no completion", raw="", field=None, signature=signature, reason="empty response"
            )
        if not completions:
            assert first_error is not None
            self._emit(inputs, None, request, response.text, usage, first_error)
            return first_error
        self._emit(inputs, completions[0] if final else None, request, response.text, usage, None)
        for note in notes:
            log.warning("%s", note)
        total = spent + usage if spent.calls or spent.cache_hits else usage
        pred = Prediction(completions[0], usage=total, warnings=tuple(notes))
        if len(completions) > 1:
            object.__setattr__(pred, "completions", completions)
        return pred

    def _emit(
        self,
        inputs: Mapping[str, Any],
        outputs: dict[str, Any] | None,
        request: LMRequest,
        raw: str | None,
        usage: Usage,
        error: BaseException | None,
    ) -> None:
        if recording_active():
            emit(TraceEntry(self, dict(inputs), outputs, list(request.messages), raw, usage, error))

    def _placeholder(self) -> Prediction:
        return Prediction(
            {name: placeholder(f.type, name) for name, f in self.signature.output_fields.items()}
        )


def _truncated(signature: Signature, request: LMRequest, index: int) -> str:
    limit = f"max_tokens={request.max_tokens}" if request.max_tokens is not None else "the backend's max_tokens"
    return (
        f"completion {index} for {signature} stopped at {limit} (finish_reason 'length'): the answer may be cut "
        "short; raise max_tokens, or use oobleck.context(on_truncation='error') to treat it as a ParseError"
    )


@contextlib.contextmanager
def _answers_written_by(adapter: Adapter, signature: Signature) -> Iterator[None]:
    """Backends that make answers up (FakeLM) write them the way this adapter reads them."""
    token = ANSWER_WRITER.set(functools.partial(adapter.format_outputs, signature))
    try:
        yield
    finally:
        ANSWER_WRITER.reset(token)


_ONE_RETRY = Usage(retries=1)


def _failed_usage(exc: BaseException, attempt: int) -> Usage:
    """What a call that raised cost: an LMError was sent (``attempts`` times, if the backend retried)."""
    if not isinstance(exc, LMError):
        return Usage()
    sent = max(exc.attempts, 1)
    return Usage(calls=sent, retries=sent - 1 + (1 if attempt else 0))


_MODES = ("auto", "generate", "score")
_CALIBRATIONS = ("auto", "contextual", "batch", None)


def _prior_key(lm: LM, requests: Sequence[LMRequest], score_norm: str) -> str:
    """What a contextual prior depends on: the LM and the content-free requests (prompt, demos,
    adapter, decoding settings, soft prompt)."""
    settings = getattr(lm, "settings", {})
    blob = json.dumps(
        {"lm": lm.identity, "settings": settings, "norm": score_norm, "requests": [r.key_data() for r in requests]},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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


def _capabilities(lm: LM | None) -> Capabilities | None:
    return lm.capabilities if lm is not None else None


def _repair(request: LMRequest, extra: list[Message]) -> LMRequest:
    return request.model_copy(update={"messages": request.messages + tuple(extra)})
