"""Metrics: functions that score one prediction against one example.

A metric is any callable ``fn(example, prediction, trace=None)``. ``trace`` is None during
evaluation and the list of :class:`~oobleck.trace.TraceEntry` of the run while an optimizer
bootstraps demos, so a metric can be stricter when it chooses demos.

It returns a number or a bool, or a score with feedback: a mapping ``{"score": 0.0,
"feedback": "..."}`` or an object with ``score`` and ``feedback`` attributes. :func:`outcome`
is the one rule that reads that value, wherever a metric is called (evaluation, bootstrapping,
the searching optimizers); the feedback is shown to the reflective optimizer and kept on each
evaluation row.

The built-in metrics compare one named field. By default that is the example's first label
field (the first field not marked as an input), read from both the example and the
prediction. A gold value may be a list of acceptable answers; the best match counts.

Example:
    >>> from oobleck import Example, Prediction
    >>> gold = Example(question="Who?", answer="The Beatles").with_inputs("question")
    >>> exact_match(gold, Prediction(answer="beatles"))
    True
    >>> round(f1(gold, Prediction(answer="the Beatles band")), 2)
    0.67
    >>> ExactMatch(field="answer", normalize=False)(gold, Prediction(answer="beatles"))
    False
"""

from __future__ import annotations

import collections
import inspect
import math
import numbers
import operator
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from oobleck.errors import ConfigError, MetricError

if TYPE_CHECKING:
    from oobleck.trace import TraceEntry

__all__ = [
    "F1",
    "ExactMatch",
    "FieldMetric",
    "Metric",
    "PassageMatch",
    "TitleRecall",
    "brier_score",
    "exact_match",
    "expected_calibration_error",
    "f1",
    "log_loss",
    "metric",
    "metric_name",
    "normalize_text",
    "outcome",
    "passage_match",
]


@runtime_checkable
class Metric(Protocol):
    """What evaluators and optimizers call to score a prediction.

    Higher is better. ``True``/``False`` count as 1.0/0.0. A score may come with feedback
    (see :func:`outcome`).
    """

    def __call__(
        self, example: Mapping[str, Any], prediction: Mapping[str, Any], trace: Sequence[TraceEntry] | None = None
    ) -> float | bool | Mapping[str, Any]:
        """Score ``prediction`` against ``example``."""
        ...


def outcome(value: Any) -> tuple[float, str | None]:
    """The score and the feedback in what a metric returned.

    Args:
        value: a number or a bool (no feedback); a mapping with ``"score"`` and, optionally,
            ``"feedback"``; or an object with a ``score`` attribute and, optionally, ``feedback``.

    Returns:
        ``(score, feedback)``; the feedback is None when the metric gave none.

    Raises:
        TypeError: any other value (the row it scored fails, like any metric that raises).
        MetricError: a score that is NaN or infinite (the row fails the same way).

    Example:
        >>> outcome(True), outcome(0.5), outcome({"score": 0, "feedback": "too long"})
        ((1.0, None), (0.5, None), (0.0, 'too long'))
    """
    if isinstance(value, (bool, numbers.Real)):
        return _finite(float(value)), None
    if isinstance(value, Mapping):
        if "score" not in value:
            raise TypeError(
                f"a metric returning a mapping must include 'score' (and may include 'feedback'), got keys {sorted(value)}"
            )
        score, feedback = value["score"], value.get("feedback")
    elif hasattr(value, "score"):
        score, feedback = value.score, getattr(value, "feedback", None)
    elif hasattr(type(value), "__float__") and not isinstance(value, (str, bytes)):
        return _finite(float(value)), None  # numpy scalars, Decimal
    else:
        raise TypeError(
            f"a metric must return a number, a bool, or a score with feedback "
            f"({{'score': ..., 'feedback': ...}} or an object with .score), got {type(value).__name__}: {value!r:.80}"
        )
    return _finite(float(score)), None if feedback is None else str(feedback)


def _finite(score: float) -> float:
    if not math.isfinite(score):
        raise MetricError(f"a metric must return a finite score, got {score}; the row counts as failed")
    return score


def metric_name(fn: Callable[..., Any]) -> str:
    """A stable, readable name for a metric (recorded in results and provenance)."""
    name = getattr(fn, "name", None)
    if isinstance(name, str):
        return name
    return getattr(fn, "__name__", None) or type(fn).__name__


class _FunctionMetric:
    """A plain function adapted to the Metric protocol (see :func:`metric`)."""

    __slots__ = ("_fn", "_takes_trace", "name")

    def __init__(self, fn: Callable[..., Any], name: str | None) -> None:
        self._fn = fn
        self._takes_trace = _accepts_trace(fn)
        self.name = name or metric_name(fn)

    def __call__(
        self, example: Mapping[str, Any], prediction: Mapping[str, Any], trace: Sequence[TraceEntry] | None = None
    ) -> Any:
        if self._takes_trace:
            return self._fn(example, prediction, trace)
        return self._fn(example, prediction)

    def __repr__(self) -> str:
        return f"metric({self.name})"


def _accepts_trace(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: assume the full protocol
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def metric(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Wrap ``fn(example, prediction)`` or ``fn(example, prediction, trace)`` as a Metric.

    Usable bare (``@metric``) or with a name (``@metric(name="accuracy")``).

    Args:
        fn: the scoring function.
        name: the name recorded in results and provenance (default: the function's name).

    Returns:
        A callable following the :class:`Metric` protocol (or a decorator, without ``fn``).

    Example:
        >>> @metric
        ... def same_label(example, prediction):
        ...     return example.label == prediction.label
        >>> same_label.name
        'same_label'
    """
    if fn is None:
        return lambda f: _FunctionMetric(f, name)
    return _FunctionMetric(fn, name)


# ---- normalisation (SQuAD style) ----

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_text(text: Any) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    s = str(text).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


def _token_f1(pred: str, gold: str) -> float:
    p, g = pred.split(), gold.split()
    if not p or not g:
        return float(p == g)
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


class FieldMetric:
    """Base of the built-in metrics: compare one field of the prediction with the example.

    Args:
        field: the field to compare; default: the example's first label field.
        normalize: apply :func:`normalize_text` to both sides first.
    """

    name = "field_metric"

    def __init__(self, *, field: str | None = None, normalize: bool = True) -> None:
        self.field = field
        self.normalize = normalize
        if field is not None:
            self.name = f"{type(self).name}[{field}]"

    def _field(self, example: Mapping[str, Any]) -> str:
        if self.field is not None:
            return self.field
        labels: Mapping[str, Any] = example.labels() if hasattr(example, "labels") else dict(example)
        if not labels:
            raise ConfigError(
                f"{self.name}: the example {example!r} has no label field to compare; "
                f"mark its inputs with .with_inputs(...) or pass {type(self).__name__}(field=...)"
            )
        return next(iter(labels))

    def _pair(self, example: Mapping[str, Any], prediction: Mapping[str, Any]) -> tuple[list[str], str]:
        name = self._field(example)
        if name not in example:
            raise ConfigError(f"{self.name}: the example has no field {name!r}; it has {sorted(example)}")
        if name not in prediction:
            raise MetricError(f"{self.name}: the prediction has no field {name!r}; it has {sorted(prediction)}")
        prep = normalize_text if self.normalize else (lambda v: str(v).strip())
        return [prep(g) for g in _golds(example[name])], prep(prediction[name])

    def score(self, golds: list[str], pred: str) -> float:
        """The score of one normalised prediction against one normalised gold value."""
        raise NotImplementedError

    def __call__(
        self, example: Mapping[str, Any], prediction: Mapping[str, Any], trace: Sequence[TraceEntry] | None = None
    ) -> float | bool:
        """The score of ``prediction`` against ``example``'s gold value(s)."""
        golds, pred = self._pair(example, prediction)
        return self.score(golds, pred)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(field={self.field!r}, normalize={self.normalize})"


class ExactMatch(FieldMetric):
    """True when the prediction's field equals the example's (any of them, for a list).

    Example:
        >>> from oobleck import Example, Prediction
        >>> ExactMatch(field="label")(Example(label="Positive"), Prediction(label="positive."))
        True
    """

    name = "exact_match"

    def score(self, golds: list[str], pred: str) -> float:
        """1.0 when ``pred`` equals one of ``golds``."""
        return float(pred in golds)

    def __call__(
        self, example: Mapping[str, Any], prediction: Mapping[str, Any], trace: Sequence[TraceEntry] | None = None
    ) -> bool:
        """True when the prediction equals one of the gold values."""
        golds, pred = self._pair(example, prediction)
        return pred in golds


class F1(FieldMetric):
    """Token-overlap F1 (SQuAD style) between the prediction's field and the example's.

    Example:
        >>> from oobleck import Example, Prediction
        >>> F1(field="a")(Example(a="red apple"), Prediction(a="apple"))
        0.6666666666666666
    """

    name = "f1"

    def score(self, golds: list[str], pred: str) -> float:
        """The best token F1 of ``pred`` against any of ``golds``."""
        return max((_token_f1(pred, g) for g in golds), default=0.0)


class PassageMatch(FieldMetric):
    """True when a gold answer appears inside one of the predicted passages.

    Args:
        field: the example's answer field; default: its first label field.
        passages_field: the prediction's field holding a passage or a list of passages.
        normalize: normalise answer and passages before matching.

    Example:
        >>> from oobleck import Example, Prediction
        >>> pm = PassageMatch(field="answer")
        >>> pm(Example(answer="Paris"), Prediction(context=["Lyon is big.", "Paris is the capital."]))
        True
    """

    name = "passage_match"

    def __init__(self, *, field: str | None = None, passages_field: str = "context", normalize: bool = True) -> None:
        super().__init__(field=field, normalize=normalize)
        self.passages_field = passages_field

    def __call__(
        self, example: Mapping[str, Any], prediction: Mapping[str, Any], trace: Sequence[TraceEntry] | None = None
    ) -> bool:
        """True when one of the prediction's passages contains a gold answer."""
        name = self._field(example)
        if self.passages_field not in prediction:
            raise MetricError(
                f"{self.name}: the prediction has no field {self.passages_field!r} (it has {sorted(prediction)}); "
                "pass PassageMatch(passages_field=...)"
            )
        prep = normalize_text if self.normalize else (lambda v: str(v))
        passages: Iterable[Any] = _golds(prediction[self.passages_field])
        texts = [prep(_passage_text(p)) for p in passages]
        golds = [prep(g) for g in _golds(example[name])]
        return any(g and g in t for g in golds for t in texts)


def _passage_text(passage: Any) -> Any:
    """What a passage says (title and text), not its repr: ``id='3' ... score=0.5`` would match "3" or "score"."""
    if isinstance(passage, Mapping):
        text, title = passage.get("text"), passage.get("title")
    else:
        text, title = getattr(passage, "text", None), getattr(passage, "title", None)
    if not isinstance(text, str):
        return passage
    return f"{title}\n{text}" if isinstance(title, str) and title else text


class TitleRecall:
    """The share of an example's gold titles found among the retrieved passages.

    Reads the prediction's passages (``Prediction(passages=[...])`` from RAG and MultiHop).
    When the prediction has none, it reads the passages of every ``Retrieve`` step in the
    trace, so it also scores custom programs while an optimizer bootstraps.

    Args:
        gold_field: the example's field with the gold title (or list of titles).
        passages_field: the prediction's field with the passages.
        all_found: score 1.0 only when every gold title was found (else 0.0).

    Raises:
        ConfigError: the example has no ``gold_field``, or there are no passages to read.

    Example:
        >>> from oobleck import Example, Prediction
        >>> from oobleck.retrieve import Passage
        >>> gold = Example(titles=["Paris", "Seine"])
        >>> TitleRecall(gold_field="titles")(gold, Prediction(passages=[Passage(id="1", title="Paris", text="...")]))
        0.5
    """

    def __init__(
        self, *, gold_field: str = "supporting_titles", passages_field: str = "passages", all_found: bool = False
    ) -> None:
        self.gold_field = gold_field
        self.passages_field = passages_field
        self.all_found = all_found
        self.name = "title_recall_all" if all_found else "title_recall"

    def __call__(
        self, example: Mapping[str, Any], prediction: Mapping[str, Any], trace: Sequence[TraceEntry] | None = None
    ) -> float:
        """The share of gold titles found in the passages (with ``all_found``: 1.0 only if all were)."""
        if self.gold_field not in example:
            raise ConfigError(f"{self.name}: the example has no field {self.gold_field!r} (it has {sorted(example)})")
        golds = {normalize_text(g) for g in _golds(example[self.gold_field])}
        if self.passages_field in prediction:
            passages = list(prediction[self.passages_field] or [])
        elif trace is not None:
            passages = [
                p
                for e in trace
                if e.outputs and type(e.predictor).__name__ == "Retrieve"
                for p in e.outputs["passages"]
            ]
        else:
            raise ConfigError(
                f"{self.name}: the prediction has no field {self.passages_field!r} (it has {sorted(prediction)}) "
                "and there is no trace to read Retrieve steps from"
            )
        found = {
            normalize_text(p.get("title", "") if isinstance(p, Mapping) else getattr(p, "title", "")) for p in passages
        }
        if not golds:
            return 1.0
        share = len(golds & found) / len(golds)
        return float(share == 1.0) if self.all_found else share


exact_match = ExactMatch()
"""Exact match on the first label field, after SQuAD-style normalisation."""

f1 = F1()
"""Token F1 on the first label field, after SQuAD-style normalisation."""

passage_match = PassageMatch()
"""Whether the gold answer appears in the prediction's ``context`` passages."""


# ---------------------------------------------------------------- calibration of label distributions
#
# These score a set of predictions at once: each takes the gold labels and the predicted
# distributions (``pred.probabilities["label"]`` from a scored predictor), row by row. A label
# the distribution does not name has probability 0.


_SUM_TOLERANCE = 0.02  # rounded probabilities (0.33 x 3) pass; a partial distribution or logits do not


def _checked_rows(
    golds: Sequence[Any], distributions: Sequence[Mapping[Any, float]], what: str
) -> list[tuple[Any, Mapping[Any, float]]]:
    if len(golds) != len(distributions):
        raise ConfigError(f"{what}: {len(golds)} gold labels but {len(distributions)} distributions; give one per row")
    if not golds:
        raise ConfigError(f"{what}: no rows")
    for i, dist in enumerate(distributions):
        if not isinstance(dist, Mapping) or not dist:
            raise ConfigError(f"{what}: row {i} is not a label -> probability mapping (got {dist!r})")
        for label, p in dist.items():
            if not isinstance(p, (bool, numbers.Real)) or not 0.0 <= float(p) <= 1.0:  # NaN fails too
                raise ConfigError(
                    f"{what}: row {i} gives label {label!r} the probability {p!r}; "
                    "expected a number from 0 to 1 (pass probabilities, not logits or text)"
                )
        total = math.fsum(float(p) for p in dist.values())
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ConfigError(
                f"{what}: row {i}'s probabilities sum to {total:.4g}, expected 1; "
                "pass each row's whole distribution (e.g. pred.probabilities['label'])"
            )
    return list(zip(golds, distributions))


def log_loss(golds: Sequence[Any], distributions: Sequence[Mapping[Any, float]], *, eps: float = 1e-15) -> float:
    """Mean negative log-probability given to the gold label (lower is better; 0 is perfect).

    Args:
        golds: the true label of each row.
        distributions: each row's predicted distribution, label -> probability.
        eps: probabilities are clipped to at least this, so one confident miss is large, not infinite.

    Example:
        >>> round(log_loss(["pos", "neg"], [{"pos": 0.8, "neg": 0.2}, {"pos": 0.4, "neg": 0.6}]), 4)
        0.367
    """
    rows = _checked_rows(golds, distributions, "log_loss")
    return math.fsum(-math.log(max(float(d.get(g, 0.0)), eps)) for g, d in rows) / len(rows)


def brier_score(golds: Sequence[Any], distributions: Sequence[Mapping[Any, float]]) -> float:
    """Mean squared distance between each distribution and the gold label's one-hot vector.

    Summed over the labels (the multi-class form of Brier 1950), averaged over rows: 0 is
    perfect, 2 is certain and wrong.

    Example:
        >>> round(brier_score(["pos", "neg"], [{"pos": 0.8, "neg": 0.2}, {"pos": 0.4, "neg": 0.6}]), 4)
        0.2
    """
    rows = _checked_rows(golds, distributions, "brier_score")
    total = 0.0
    for gold, dist in rows:
        labels = set(dist) | {gold}
        total += math.fsum((float(dist.get(k, 0.0)) - (1.0 if k == gold else 0.0)) ** 2 for k in labels)
    return total / len(rows)


def expected_calibration_error(
    golds: Sequence[Any], distributions: Sequence[Mapping[Any, float]], *, bins: int = 10
) -> float:
    """How far confidence is from accuracy (Naeini et al. 2015; Guo et al. 2017), from 0 to 1.

    Each row's answer is its most probable label and its confidence that probability. Rows
    are put into ``bins`` equal-width confidence bins; the result is the mean over bins of
    ``|accuracy - mean confidence|``, weighted by the share of rows in the bin.

    Example:
        >>> rows = [{"pos": 0.9, "neg": 0.1}] * 4          # 90% sure every time
        >>> round(expected_calibration_error(["pos", "pos", "pos", "neg"], rows), 4)   # right 75% of the time
        0.15
    """
    given = bins
    try:
        bins = 0 if isinstance(bins, bool) else operator.index(bins)  # numpy integers too; not 2.5 or "10"
    except TypeError:
        bins = 0
    if bins < 1:
        raise ConfigError(f"expected_calibration_error: bins must be an integer of at least 1, got {given!r}")
    rows = _checked_rows(golds, distributions, "expected_calibration_error")
    totals = [[0, 0.0, 0.0] for _ in range(bins)]  # rows, confidence, correct
    for gold, dist in rows:
        answer = max(dist, key=lambda k: float(dist[k]))
        confidence = float(dist[answer])
        b = min(int(confidence * bins), bins - 1)
        totals[b][0] += 1
        totals[b][1] += confidence
        totals[b][2] += 1.0 if answer == gold else 0.0
    return sum(abs(correct - conf) for n, conf, correct in totals if n) / len(rows)
