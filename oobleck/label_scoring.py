"""Label scoring: answer a classification by ranking its labels by likelihood.

With a label output (a ``Literal``, an ``Enum`` or a ``bool``), the answer need not be generated
and parsed: every allowed label is written the way the adapter writes answers, the backend
scores each one after the same prompt (``LMRequest.score``: the log-probability of those exact
tokens), and the labels' scores become a probability distribution. Nothing is parsed, the
answer is always a label, and the distribution is part of the answer (see
:mod:`oobleck.calibration` for removing the label prior from it).

A signature may put free-text outputs before its labels (ChainOfThought's ``reasoning``):
those are generated first, in one ordinary call, and written into every scored completion, so
the labels are scored given them. With several label outputs, each is scored in its own
request given the ones chosen before it (greedy, like decoding, rather than scoring every
combination).

:class:`LabelScoring` is what :class:`~oobleck.predict.Predict` uses in ``mode="score"``: it
builds requests from the predictor's ordinary request, turns responses into distributions, and
walks one scored answer (:meth:`LabelScoring.answer`) through the hooks the predictor hands it
(:class:`ScoringHooks`). It holds no state and knows nothing of the predictor. Which prior is
divided out of the distributions is :mod:`oobleck._score_mode`'s business.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_origin

from oobleck import _types
from oobleck.adapters.base import Adapter
from oobleck.errors import ConfigError, LMError, LMResponseError
from oobleck.example import Prediction
from oobleck.lm.base import LM, Capabilities
from oobleck.lm.types import Choice, LMRequest, LMResponse, Usage
from oobleck.signature import Signature

__all__ = [
    "LabelScoring",
    "Prior",
    "ScoreNorm",
    "ScoringHooks",
    "check_scoring",
    "choose_mode",
    "json_labels",
    "label_values",
    "scoring_plan",
]

ScoreNorm = Literal["sum", "mean"]

# Request fields that mean nothing when scoring (no text is generated).
_GENERATION_ONLY = {
    "temperature": None,
    "max_tokens": None,
    "stop": None,
    "n": 1,
    "seed": None,
    "top_p": None,
    "logprobs": False,
    "top_logprobs": None,
    "response_format": None,
}


def label_values(tp: Any) -> tuple[Any, ...] | None:
    """The labels of a field type: a Literal's or Enum's values, ``(True, False)`` for bool, else None."""
    if tp is bool:
        return (True, False)
    return _types.literal_choices(tp)


@dataclass(frozen=True, slots=True)
class ScoringPlan:
    """How a signature is scored.

    Attributes:
        text_fields: the free-text outputs generated first, in order.
        labels: each label output with its allowed values (as declared), in order.
    """

    text_fields: tuple[str, ...]
    labels: tuple[tuple[str, tuple[Any, ...]], ...]


_PLANS: dict[int, tuple[Signature, ScoringPlan | str]] = {}


def scoring_plan(signature: Signature) -> ScoringPlan | str:
    """The plan for scoring ``signature``, or the reason it cannot be scored.

    A signature can be scored when it has at least one label output (Literal, Enum or bool)
    and every free-text output comes before the first label.

    Remembered per signature object (signatures are immutable, and every call of a predictor
    asks); by identity, not equality: ``Literal["a", "b"] == Literal["b", "a"]``, but the label
    order is part of the plan.
    """
    known = _PLANS.get(id(signature))
    if known is not None and known[0] is signature:
        return known[1]
    plan = _plan(signature)
    if len(_PLANS) >= 512:
        _PLANS.clear()
    _PLANS[id(signature)] = (signature, plan)  # holding the signature keeps its id from being reused
    return plan


def _plan(signature: Signature) -> ScoringPlan | str:
    texts: list[str] = []
    labels: list[tuple[str, tuple[Any, ...]]] = []
    for f in signature.output_fields.values():
        values = label_values(f.type)
        if values:
            # an Enum's distribution is keyed by its members, which never compare equal
            same = _equal_labels(values) if get_origin(f.type) is Literal else None
            if same is not None:
                # a distribution is keyed by label: 1 and True would share one entry
                return (
                    f"the labels {same[0]!r} and {same[1]!r} of {f.name!r} are equal in Python, so one "
                    "distribution cannot hold both"
                )
            labels.append((f.name, tuple(values)))
        elif labels:
            return f"output {f.name!r} ({_types.type_to_str(f.type)}) comes after the label {labels[-1][0]!r}"
        else:
            texts.append(f.name)
    if not labels:
        return f"no output of {signature} is a Literal, Enum or bool"
    return ScoringPlan(tuple(texts), tuple(labels))


def _equal_labels(values: Sequence[Any]) -> tuple[Any, Any] | None:
    """Two labels that compare equal (``1`` and ``True``, which ``Literal`` keeps apart), if any."""
    seen: dict[Any, Any] = {}
    for value in values:
        earlier = seen.setdefault(value, value)
        if earlier is not value:
            return earlier, value
    return None


def json_labels(signature: Signature) -> dict[str, tuple[Any, ...]]:
    """Each label output's labels as JSON values, in order (what a saved calibration is checked against)."""
    return {name: tuple(_types.to_jsonable(v) for v in values) for name, values in require_plan(signature).labels}


def require_plan(signature: Signature) -> ScoringPlan:
    """:func:`scoring_plan`, raising ConfigError when the signature cannot be scored."""
    plan = scoring_plan(signature)
    if isinstance(plan, str):
        raise ConfigError(
            f"mode='score' ranks the labels of Literal, Enum or bool outputs (free-text outputs may come "
            f"first and are generated), but {plan}; use mode='generate'"
        )
    return plan


def choose_mode(
    signature: Signature,
    capabilities: Capabilities | None,
    *,
    adapter_named: bool,
    config: Mapping[str, Any],
) -> tuple[Literal["generate", "score"], str]:
    """What ``mode="auto"`` resolves to, and why.

    Scoring is the default only when nothing asks otherwise: every output is a label, the
    backend declares ``capabilities.scoring``, no adapter was named (a named format is a
    request to generate in it) and no sampling (``n > 1``) was asked for.
    """
    plan = scoring_plan(signature)
    if isinstance(plan, str):
        return "generate", f"generate: {plan}"
    if plan.text_fields:
        return "generate", (
            f"generate: {signature} has free-text output(s) {list(plan.text_fields)} "
            "(name mode='score' to generate them, then score the labels)"
        )
    if capabilities is None:
        return "generate", "generate: no LM set yet (labels are scored on a backend that declares capabilities.scoring)"
    if not capabilities.scoring:
        return "generate", "generate: the backend cannot score completions (capabilities.scoring is False)"
    if adapter_named:
        return "generate", "generate: an adapter was named (name mode='score' to score its labels)"
    if (config.get("n") or 1) > 1:
        return "generate", "generate: n > 1 asks for samples"
    return "score", (
        "score: every output is a label and the backend scores completions (capabilities.scoring), "
        "so each label is ranked by likelihood instead of generated; calibrated by default"
    )


def check_scoring(signature: Signature, lm: LM) -> None:
    """Raise unless ``lm`` can score completions (``capabilities.scoring``).

    Raises:
        ConfigError: the backend only generates.
    """
    if not lm.capabilities.scoring:
        name = type(lm).__name__
        raise ConfigError(
            f"Predict({str(signature)!r}) on {name}: mode='score' needs a backend that scores "
            f"completions (capabilities.scoring: token log-probabilities of given text); {name} only "
            "generates. Use a backend that declares it (TransformersLM, ...), or mode='generate'"
        )


class Prior(Protocol):
    """A label prior to divide out of a label output's distribution (a fitted ``Calibration``)."""

    def apply(self, name: str, probabilities: Sequence[float]) -> list[float]:
        """``probabilities`` of the label output ``name``, calibrated."""
        ...


#: How a step is traced: inputs, outputs (None unless it is the call's answer), the request,
#: the raw text, what the attempt cost, the error (None when it succeeded).
Emit = Callable[[Mapping[str, Any], dict[str, Any] | None, LMRequest, str | None, Usage, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class ScoringHooks:
    """What a scored answer needs from the predictor that asks for it, handed in.

    Attributes:
        request: the predictor's generating request for some inputs (the scoring requests
            are derived from it).
        generate: generates and parses a signature's outputs from a request, repairing parse
            failures, traced without outputs (for free-text outputs before the labels).
        emit: traces one step (see :data:`Emit`).
        emit_failure: traces a request that raised (it works out what the attempt cost).
    """

    request: Callable[[Mapping[str, Any]], LMRequest]
    generate: Callable[[Mapping[str, Any], LMRequest, Signature], Generator[LMRequest, LMResponse, Prediction]]
    emit: Emit
    emit_failure: Callable[[Mapping[str, Any], LMRequest, BaseException], None]


@dataclass(frozen=True, slots=True)
class LabelScoring:
    """The requests and distributions of score mode for one signature and adapter.

    Args:
        signature: the predictor's signature (see :func:`scoring_plan`).
        adapter: writes each candidate answer, exactly as it writes answers in demos.
        score_norm: ``"sum"`` scores a label by the summed log-probability of its tokens (the
            probability of the whole label); ``"mean"`` by their mean, which stops long labels
            losing to short ones only for being long.
    """

    signature: Signature
    adapter: Adapter
    score_norm: ScoreNorm = "sum"

    @property
    def plan(self) -> ScoringPlan:
        """The signature's plan (raises ConfigError when it cannot be scored)."""
        return require_plan(self.signature)

    def text_signature(self) -> Signature:
        """The signature with only the free-text outputs, used to read the generated part."""
        plan = self.plan
        drop = [name for name, _ in plan.labels]
        sig = self.signature
        for name in drop:
            sig = sig.delete(name)
        return sig

    def score_request(self, base: LMRequest, known: Mapping[str, Any], field: str) -> LMRequest:
        """The request scoring ``field``'s labels after ``base``'s messages.

        Each completion writes the outputs known so far (generated text, labels already
        chosen) and then one label of ``field``, the way the adapter writes answers.
        """
        values = dict(self.plan.labels)[field]
        completions = tuple(self.adapter.format_outputs(self.signature, {**known, field: v}) for v in values)
        return base.model_copy(update={**_GENERATION_ONLY, "score": completions})

    def first_request(self, base: LMRequest) -> LMRequest:
        """The first request of a scored answer: ``base`` itself when free text comes first."""
        plan = self.plan
        return base if plan.text_fields else self.score_request(base, {}, plan.labels[0][0])

    def scores(self, response: LMResponse, field: str) -> list[float]:
        """Each label's score (log-probability, summed or averaged over the label's own tokens).

        The tokens every completion shares at its start (the answer's layout, generated text)
        are context, not label: they are left out, so ``"mean"`` averages over the label alone.

        Raises:
            LMResponseError: a score is missing or the backend returned the wrong number of them.
        """
        values = dict(self.plan.labels)[field]
        if len(response.choices) != len(values):
            raise LMResponseError(
                f"asked to score {len(values)} labels of {field!r}, the backend returned {len(response.choices)} scores"
            )
        return label_scores(response.choices, self.score_norm)

    def labels(self, field: str) -> tuple[Any, ...]:
        """``field``'s labels as typed values (an Enum's members), in declared order."""
        tp = self.signature.output_fields[field].type
        return tuple(_types.validate(tp, v) for v in dict(self.plan.labels)[field])

    def answer(
        self, inputs: Mapping[str, Any], hooks: ScoringHooks, prior: Prior | None, *, final: bool
    ) -> Generator[LMRequest, LMResponse, Prediction]:
        """One scored answer: free text generated first, then each label output in turn.

        Yields each request and receives its response, like ``Predict``'s own steps. The
        prediction carries the label distributions: ``probabilities`` with ``prior`` divided
        out, ``raw_probabilities`` as scored.

        Args:
            inputs: the predictor's inputs.
            hooks: the predictor's request, generation and trace.
            prior: the prior to divide out, or None for raw probabilities.
            final: this is the call's answer (traced with its outputs); otherwise a step of
                estimating a prior, traced without outputs so no demo is ever made of it.
        """
        plan = self.plan
        base = hooks.request(inputs)
        known: dict[str, Any] = {}
        spent = Usage()
        if plan.text_fields:
            texts = yield from hooks.generate(inputs, base, self.text_signature())
            known.update(texts.to_dict())
            spent = texts.usage
        raw: dict[str, dict[Any, float]] = {}
        calibrated: dict[str, dict[Any, float]] = {}
        for i, (name, _) in enumerate(plan.labels):
            request = self.score_request(base, known, name)
            started = time.perf_counter()
            try:
                response = yield request
            except Exception as exc:
                hooks.emit_failure(inputs, request, exc)
                raise
            usage = response.usage
            if not usage.latency_s:
                usage = usage.with_latency(time.perf_counter() - started)
            try:
                scores = self.scores(response, name)
            except LMError as exc:
                hooks.emit(inputs, None, request, response.text, usage, exc)
                raise
            labels = self.labels(name)
            probabilities = softmax(scores)
            adjusted = prior.apply(name, probabilities) if prior is not None else probabilities
            best = max(range(len(labels)), key=lambda j: (adjusted[j], -j))  # ties: the first label
            known[name] = labels[best]
            raw[name] = dict(zip(labels, probabilities))
            calibrated[name] = dict(zip(labels, adjusted))
            done = final and i == len(plan.labels) - 1
            hooks.emit(inputs, dict(known) if done else None, request, response.choices[best].text, usage, None)
            spent = spent + usage
        pred = Prediction({name: known[name] for name in self.signature.output_fields}, usage=spent)
        object.__setattr__(pred, "probabilities", calibrated)
        object.__setattr__(pred, "raw_probabilities", raw)
        return pred


def label_scores(choices: Sequence[Choice], score_norm: ScoreNorm) -> list[float]:
    """Scores of scored completions, without the tokens they all share at the start.

    Example:
        >>> from oobleck.lm.types import Choice, TokenLogprob as T
        >>> a = Choice(text="A: yes", logprobs=(T(token="A:", logprob=-1.0), T(token=" yes", logprob=-0.5)))
        >>> b = Choice(text="A: no", logprobs=(T(token="A:", logprob=-1.0), T(token=" no", logprob=-2.0)))
        >>> label_scores([a, b], "sum")
        [-0.5, -2.0]
    """
    tokens = []
    for choice in choices:
        if not choice.logprobs:
            raise LMResponseError(
                "the backend returned scores without token log-probabilities (Choice.logprobs); "
                "label scoring needs one log-probability per token of each completion"
            )
        tokens.append(choice.logprobs)
    shared = _shared_prefix([[t.token for t in ts] for ts in tokens])
    out = []
    for ts in tokens:
        own = [t.logprob for t in ts[shared:]]
        if any(math.isnan(v) for v in own):
            raise LMResponseError("the backend returned a NaN token log-probability")
        total = math.fsum(own)
        out.append(total / len(own) if score_norm == "mean" else total)
    return out


def _shared_prefix(sequences: list[list[str]]) -> int:
    """Tokens all sequences share at the start, leaving each at least one of its own."""
    if len(sequences) < 2:
        return 0
    limit = min(len(s) for s in sequences) - 1
    n = 0
    while n < limit and all(s[n] == sequences[0][n] for s in sequences):
        n += 1
    return n


def softmax(scores: Sequence[float]) -> list[float]:
    """Probabilities from log-scores (stable; the result sums to 1).

    Example:
        >>> [round(p, 3) for p in softmax([0.0, math.log(3.0)])]
        [0.25, 0.75]
    """
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = math.fsum(weights)
    return [w / total for w in weights]
