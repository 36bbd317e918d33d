"""Predict: the one step that calls an LM.

Data flows one way: inputs → Predict → Adapter.render → LMRequest → LM → LMResponse →
Adapter.parse → Prediction. The sync and async paths drive the same generator of requests, so
parsing, parse-repair retries, usage and tracing behave identically in both.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import functools
import logging
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, Literal

from oobleck import _budget, _score_mode, _watch, label_scoring, streaming
from oobleck.adapters import default_adapter
from oobleck.adapters._values import Placeholder, placeholder
from oobleck.adapters.base import Adapter
from oobleck.calibration import Calibration
from oobleck.context import current
from oobleck.errors import ArtifactError, BudgetExceededError, ConfigError, InputError, LMError, ParseError
from oobleck.example import Example, Prediction
from oobleck.lm._policy import check_decoding
from oobleck.lm.base import ANSWER_WRITER, LM, Capabilities
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.types import LMRequest, LMResponse, Message, Usage
from oobleck.module import RENDERING, Module, RenderedCall, watched_call
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
            first. Needs a backend with ``capabilities.scoring``. Under
            ``program.stream(...)`` the free text streams as decoded and each label comes
            as one chunk once chosen (it is picked whole from the scores, never decoded).
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
        check_decoding(config, f"Predict({str(signature)[:60]!r})")
        self.signature = ensure_signature(signature)
        self.demos: list[Example] = [d if isinstance(d, Example) else Example(d) for d in demos]
        self.lm = lm
        self.adapter = adapter
        self.max_retries = max_retries
        self.config: dict[str, Any] = dict(config)
        _score_mode.check_settings(self.signature, mode, calibration, score_norm)
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
        # Priors estimated on first use; shared by copies (each is keyed by everything it
        # depends on, so a copy under other demos finds none of its own).
        self._priors = _score_mode.PriorMemo()

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
        """sha256 of what a label prior depends on besides the LM.

        That is the signature, instructions, demos, the adapter in use (with its options) and
        the score normalisation.

        Args:
            adapter: the adapter in use, if the caller resolved it already.
        """
        if adapter is None:
            try:
                adapter = self.resolve_adapter()
            except ConfigError:  # no LM here: the adapter named on the predictor, if any
                adapter = self.adapter
        return _score_mode.prompt_fingerprint(self.signature, self.demos, adapter, self.score_norm)

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

        A named mode is saved as named. The default ``"auto"`` stays ``"auto"`` while the
        adapter is the default too (both are resolved against the LM in use when the loaded
        program is called), with the calibration setting and the prior in use here, if any.
        """
        extra: dict[str, Any] = {}
        settings = self._score_settings()
        labels = self._labels()
        if self.mode == "score":
            extra.update(_score_mode.dump_state(settings, self._priors, self.prompt_fingerprint(), labels))
        elif self.mode == "generate":
            extra["mode"] = "generate"
        elif self.adapter_is_default():
            extra.update(_score_mode.dump_auto_state(settings, self._priors, self.prompt_fingerprint(), labels))
        prompt = self.soft_prompt
        if prompt is not None:
            name = f"soft-{prompt.sha256[:24]}.safetensors"
            if name not in files.names():  # two predictors may share one soft prompt
                files.write(name, prompt.data)
            extra["soft_prompt"] = {**prompt.describe(), "file": name}
        return extra or None

    def load_extra(self, extra: Mapping[str, Any], files: Any) -> None:
        """Restore what :meth:`dump_extra` saved (untrusted: every value is checked first)."""
        unknown = sorted(set(extra) - _score_mode.STATE_KEYS - {"soft_prompt"})
        if unknown:
            raise ArtifactError(f"unknown predictor state {unknown}")
        mode, calibration, score_norm, state = _score_mode.load_state(extra, self.signature)
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

    def adapter_is_default(self) -> bool:
        """Whether no adapter is named here (on the predictor or in the context).

        Then the adapter, and with ``mode="auto"`` the mode, follow the LM's capabilities at
        each call; an artifact saves them as ``auto``.
        """
        return self.adapter is None and current().adapter is None

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
        return self.adapter_choice(lm)[0]

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
            return self.mode, f"{self.mode}: named on the predictor"
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
            raise InputError(f"{'; '.join(parts)} for signature {self.signature}; expected exactly {list(expected)}")

    # ---- rendering ----

    def render(self, /, **inputs: Any) -> list[Message]:
        """The exact messages this predictor sends for ``inputs`` (no LM call)."""
        self._check_inputs(inputs)
        return self.resolve_adapter().render(self.signature, demos=self.demos, inputs=inputs)

    def render_calls(self, /, **inputs: Any) -> list[RenderedCall]:
        """One RenderedCall named ``"self"`` (see Module.render_calls)."""
        adapter, reason = self.adapter_choice()
        return [RenderedCall("self", self.render(**inputs), adapter.name, reason)]

    def template(self, *, adapter: Adapter | None = None) -> list[Message]:
        """The messages with ``{field}`` placeholders where the inputs go.

        Args:
            adapter: render with this adapter (default: the one this predictor uses here).
        """
        inputs = {name: Placeholder("{" + name + "}") for name in self.signature.input_fields}
        return (adapter or self.resolve_adapter()).render(self.signature, demos=self.demos, inputs=inputs)

    def request(self, /, **inputs: Any) -> LMRequest:
        """The exact LMRequest this predictor sends first for ``inputs`` (no LM call).

        In score mode: the request scoring the first label output, or, with free-text outputs
        before the labels, the request generating them.
        """
        self._check_inputs(inputs)
        lm = self.resolve_lm()
        adapter = self.resolve_adapter(lm)
        if self.mode_choice(lm)[0] != "score":
            return self._request(adapter, lm, inputs)
        label_scoring.check_scoring(self.signature, lm)
        scoring = label_scoring.LabelScoring(self.signature, adapter, self.score_norm)
        return scoring.first_request(self._request(adapter, lm, inputs))

    def _request(self, adapter: Adapter, lm: LM, inputs: Mapping[str, Any]) -> LMRequest:
        """The generating request for ``inputs`` (score mode derives its requests from it)."""
        messages = _watch.render(adapter, self.signature, self.demos, inputs)
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
        if settings.temperature is not None:
            params.setdefault("temperature", settings.temperature)
        if settings.hint:
            messages = _with_hint(messages, settings.hint)
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

    def __call__(self, /, *args: Any, **inputs: Any) -> Prediction:
        """Run the predictor on the inputs (by name): see :meth:`forward`."""
        if args:
            raise InputError(
                f"Predict takes inputs by name, e.g. predict({next(iter(self.signature.input_fields), 'x')}=...)"
            )
        with watched_call(self, inputs) as watched:
            prediction = self.forward(**inputs)
            watched.done(prediction)
        return prediction

    async def acall(self, /, **inputs: Any) -> Prediction:
        """Call from async code."""
        with watched_call(self, inputs) as watched:
            prediction = await self.aforward(**inputs)
            watched.done(prediction)
        return prediction

    def forward(self, /, **inputs: Any) -> Prediction:
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
        fields = streaming.emitter(self, adapter)  # None unless the caller streams
        with _answers_written_by(adapter, self.signature):
            while True:
                if fields:
                    fields.check_open()  # a stream's consumer that left gets no further call
                # Reserved in the active budget before it is sent (BudgetExceededError, nothing
                # sent, when it does not fit); settled with what it cost as the steps read it.
                with _budget.sending(request):
                    try:
                        with fields.sending(request) if fields else contextlib.nullcontext():
                            response = _watch.complete(lm, request)
                    except Exception as exc:
                        steps.throw(exc)  # records the failure, then re-raises it
                        raise
                    _budget.received(response.usage)
                    if fields:
                        fields.received(request, response)
                    try:
                        request = steps.send(response)
                    except StopIteration as done:
                        if fields:
                            fields.finish(done.value)
                        return done.value  # type: ignore[no-any-return]

    async def aforward(self, /, **inputs: Any) -> Prediction:
        """Async form of :meth:`forward` (uses the backend's async client)."""
        self._check_inputs(inputs)
        lm = self.resolve_lm()
        adapter = self.resolve_adapter(lm)
        steps = self._steps(adapter, lm, inputs)
        request = next(steps)
        fields = streaming.emitter(self, adapter)
        with _answers_written_by(adapter, self.signature):
            while True:
                if fields:
                    fields.check_open()
                with _budget.sending(request):  # as in forward
                    try:
                        with fields.sending(request) if fields else contextlib.nullcontext():
                            response = await _watch.acomplete(lm, request)
                    except Exception as exc:
                        steps.throw(exc)
                        raise
                    _budget.received(response.usage)
                    if fields:
                        fields.received(request, response)
                    try:
                        request = steps.send(response)
                    except StopIteration as done:
                        if fields:
                            fields.finish(done.value)
                        return done.value  # type: ignore[no-any-return]

    def _steps(
        self, adapter: Adapter, lm: LM, inputs: Mapping[str, Any]
    ) -> Generator[LMRequest, LMResponse, Prediction]:
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
        """Generate and parse ``signature``'s outputs, repairing parse failures.

        ``final``: the call's answer; otherwise a step before scoring, traced without outputs.
        """
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
                failed = _failed_usage(exc, attempt)
                _budget.settle(failed)
                self._emit(inputs, None, request, None, failed, exc)
                raise
            usage = response.usage
            if not usage.latency_s:
                usage = usage.with_latency(time.perf_counter() - started)
            if attempt and usage.calls:
                usage = usage + _ONE_RETRY  # a repair that reached a backend (not a cache hit)
            _budget.settle(usage)  # the budget counts each attempt as the trace does
            outcome = self._parse(adapter, inputs, request, response, usage, spent, signature, final)
            if not isinstance(outcome, ParseError):
                return outcome
            if attempt >= retries:
                raise outcome
            attempt += 1
            spent = spent + usage
            request = _repair(request, adapter.repair_messages(signature, response.text, outcome.reason))

    # ---- score mode (oobleck._score_mode: the strategy; oobleck.label_scoring, oobleck.calibration) ----

    def current_prior(self) -> Calibration | None:
        """The label prior this predictor divides out under its current prompt, if it has one yet.

        The prior :func:`oobleck.calibrate` fitted, unless the demos or instructions changed
        since; else the one estimated on the first call under this prompt. None before that,
        and when calibration is off.
        """
        return self._score_settings().current(self._priors, self.prompt_fingerprint(), self._labels())

    def _labels(self) -> dict[str, tuple[Any, ...]]:
        """The label outputs' labels as JSON values (what a prior is over); none when nothing can be scored."""
        if isinstance(label_scoring.scoring_plan(self.signature), str):
            return {}
        return label_scoring.json_labels(self.signature)

    def _score_settings(self) -> _score_mode.ScoreSettings:
        return _score_mode.ScoreSettings(
            self, self.mode, self.calibration, self.score_norm, self.calibration_state, self.calibration_rows
        )

    def _score_steps(
        self, adapter: Adapter, lm: LM, inputs: Mapping[str, Any]
    ) -> Generator[LMRequest, LMResponse, Prediction]:
        """Score the labels (after generating any free text first), calibrated as configured."""
        label_scoring.check_scoring(self.signature, lm)
        hooks = label_scoring.ScoringHooks(
            request=functools.partial(self._request, adapter, lm),
            generate=lambda values, request, signature: self._attempts(
                adapter, values, request, signature, final=False
            ),
            emit=self._emit,
            emit_failure=lambda values, request, exc: self._emit(
                values, None, request, None, _failed_usage(exc, 0), exc
            ),
        )
        scoring = label_scoring.LabelScoring(self.signature, adapter, self.score_norm)
        mode = _score_mode.ScoreMode(
            scoring, self._score_settings(), self._priors, hooks, lm, self.prompt_fingerprint(adapter)
        )
        return (yield from mode.steps(inputs))

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
                        raise ParseError(
                            note, raw=choice.text, field=None, signature=signature, reason="truncated at max_tokens"
                        )
                    notes.append(note)
                completions.append(_watch.parse(adapter, signature, choice.text))
            except ParseError as exc:
                if choice.finish_reason == "length" and exc.reason != "truncated at max_tokens":
                    exc = _cut_short(exc, request)  # say why it did not parse: the answer was cut
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
        return Prediction({name: placeholder(f.type, name) for name, f in self.signature.output_fields.items()})


def _truncated(signature: Signature, request: LMRequest, index: int) -> str:
    limit = f"max_tokens={request.max_tokens}" if request.max_tokens is not None else "the backend's max_tokens"
    return (
        f"completion {index} for {signature} stopped at {limit} (finish_reason 'length'): the answer may be cut "
        "short; raise max_tokens, or use oobleck.context(on_truncation='error') to treat it as a ParseError"
    )


def _cut_short(exc: ParseError, request: LMRequest) -> ParseError:
    limit = f"max_tokens={request.max_tokens}" if request.max_tokens is not None else "the backend's max_tokens"
    error = ParseError(
        f"{exc} (the answer was cut at {limit}, finish_reason 'length': raise max_tokens so it can finish)",
        raw=exc.raw,
        field=exc.field,
        signature=exc.signature,
        reason=exc.reason,
    )
    error.__cause__ = exc
    return error


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
    """What a call that raised cost, in calls sent.

    An LMError was sent ``attempts`` times (if the backend retried); a BudgetExceededError from
    a refused transport retry came after ``attempts`` were sent.
    """
    if isinstance(exc, LMError):
        sent = max(exc.attempts, 1)
    elif isinstance(exc, BudgetExceededError) and exc.attempts:
        sent = exc.attempts
    else:
        return Usage()
    return Usage(calls=sent, retries=sent - 1 + (1 if attempt else 0))


def _capabilities(lm: LM | None) -> Capabilities | None:
    return lm.capabilities if lm is not None else None


def _with_hint(messages: list[Message], hint: str) -> list[Message]:
    """The messages with ``hint`` after the system message's text (oobleck.context(hint=...))."""
    if messages and messages[0].role == "system":
        return [messages[0].model_copy(update={"content": f"{messages[0].content}\n\n{hint}"}), *messages[1:]]
    return [Message(role="system", content=hint), *messages]


def _repair(request: LMRequest, extra: list[Message]) -> LMRequest:
    return request.model_copy(update={"messages": request.messages + tuple(extra)})
