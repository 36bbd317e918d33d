"""Calibration: removing a scored predictor's label prior from its answers.

A small model asked to pick a label leans towards some labels whatever the input: the
prompt's shape, the demos' order and the labels' spelling all push probability mass around
before the input is read. Both methods here estimate that prior as a probability vector over
the labels and divide it out of every prediction::

    calibrated(y | x)  ∝  p(y | x) / prior(y)        (in logs: log p − log prior, renormalised)

They differ only in where the prior comes from:

- ``"contextual"`` (Zhao et al. 2021, "Calibrate Before Use"): the mean label distribution on
  content-free inputs (``"N/A"``, ``""``, ``"[MASK]"`` in every input field). It needs no data,
  so it is what a scored predictor uses by default, estimated on its first call.
- ``"batch"`` (Zhou et al. 2024, "Batch Calibration"): the mean label distribution over real,
  unlabelled inputs: no content-free string whose own bias leaks in, but it needs rows.

(Zhao et al. apply ``softmax(W p)`` with ``W = diag(prior)⁻¹``; the ratio renormalised used
here has the same argmax and is the same correction as batch calibration's ``log p − log
prior``, so the two methods give comparable probabilities.)

The fitted prior is state of the predictor (:class:`Calibration`), saved in artifacts with how
it was fitted. :func:`calibrate` fits it on a copy of a program; it never changes the program
it was given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from oobleck import _types
from oobleck.errors import ArtifactError, ConfigError
from oobleck.label_scoring import ScoreNorm, json_labels, softmax

if TYPE_CHECKING:
    from oobleck.module import Module
    from oobleck.predict import Predict

__all__ = [
    "CONTENT_FREE",
    "Calibration",
    "CalibrationMethod",
    "calibrate",
    "calibrated",
    "fit_calibration",
    "mean_distribution",
    "with_calibration_rows",
]

CalibrationMethod = Literal["contextual", "batch"]

CONTENT_FREE: tuple[str, ...] = ("N/A", "", "[MASK]")
"""The content-free inputs of contextual calibration (Zhao et al. 2021 average these three)."""

# A prior entry never reaches 0 (a label no input ever gave any mass would divide by zero).
_FLOOR = 1e-300
_MAX_CONTENT_FREE = 32


def calibrated(probabilities: Sequence[float], prior: Sequence[float]) -> list[float]:
    """``probabilities`` with ``prior`` divided out, renormalised.

    Args:
        probabilities: one label distribution (sums to 1).
        prior: the label prior, in the same order.

    Example:
        >>> [round(p, 4) for p in calibrated([0.8, 0.2], [0.9, 0.1])]
        [0.3077, 0.6923]
        >>> calibrated([0.8, 0.2], [0.5, 0.5])   # a uniform prior changes nothing
        [0.8, 0.2]
    """
    if len(probabilities) != len(prior):
        raise ConfigError(f"a prior over {len(prior)} labels cannot calibrate a distribution over {len(probabilities)}")
    logs = [_log(p) - _log(q) for p, q in zip(probabilities, prior)]
    return softmax(logs)


def mean_distribution(distributions: Iterable[Sequence[float]]) -> list[float]:
    """The mean of label distributions (each over the same labels, in the same order).

    Example:
        >>> mean_distribution([[0.9, 0.1], [0.5, 0.5]])
        [0.7, 0.3]
    """
    rows = [list(d) for d in distributions]
    if not rows:
        raise ConfigError("a prior needs at least one label distribution")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ConfigError("label distributions of different lengths cannot be averaged")
    mean = [math.fsum(r[i] for r in rows) / len(rows) for i in range(width)]
    return [max(v, _FLOOR) for v in mean]


@dataclass(frozen=True, slots=True)
class Calibration:
    """A fitted label prior for each label output of one predictor, and how it was fitted.

    Attributes:
        method: ``"contextual"`` or ``"batch"``.
        priors: per label output, the prior over its labels (in the signature's order).
        labels: per label output, its labels as JSON values (checked against the signature
            when an artifact is loaded).
        rows: how many inputs the prior was averaged over.
        content_free: the content-free strings used (contextual only).
        score_norm: how label scores were computed when it was fitted (a prior fitted on sums
            does not fit means).
        prompt: sha256 of the prompt it was fitted under (instructions, demos, adapter): a
            prior belongs to one prompt, and one fitted under other demos is stale.
    """

    method: CalibrationMethod
    priors: Mapping[str, tuple[float, ...]]
    labels: Mapping[str, tuple[Any, ...]]
    rows: int
    content_free: tuple[str, ...] = ()
    score_norm: ScoreNorm = "sum"
    prompt: str = ""

    @classmethod
    def fit(
        cls,
        method: CalibrationMethod,
        distributions: Sequence[Mapping[str, Sequence[float]]],
        *,
        labels: Mapping[str, Sequence[Any]],
        content_free: Sequence[str] = (),
        score_norm: ScoreNorm = "sum",
        prompt: str = "",
    ) -> Calibration:
        """The prior of each label output: the mean of the raw distributions given.

        Args:
            method: how the inputs were chosen (recorded).
            distributions: one mapping per input, label output → raw distribution.
            labels: per label output, its labels (JSON values) in order.
            content_free: the content-free strings, for contextual calibration.
            score_norm: how the scores were computed.
            prompt: the fingerprint of the prompt the distributions were scored under.
        """
        priors = {name: tuple(mean_distribution(d[name] for d in distributions)) for name in labels}
        return cls(
            method=method,
            priors=priors,
            labels={k: tuple(v) for k, v in labels.items()},
            rows=len(distributions),
            content_free=tuple(content_free) if method == "contextual" else (),
            score_norm=score_norm,
            prompt=prompt,
        )

    def apply(self, name: str, probabilities: Sequence[float]) -> list[float]:
        """Calibrate one label output's raw distribution (see :func:`calibrated`)."""
        return calibrated(probabilities, self.priors[name])

    def to_data(self) -> dict[str, Any]:
        """JSON data for an artifact (read back with :meth:`from_data`)."""
        data: dict[str, Any] = {
            "method": self.method,
            "outputs": {n: {"labels": list(self.labels[n]), "prior": list(self.priors[n])} for n in self.priors},
            "rows": self.rows,
            "score_norm": self.score_norm,
        }
        if self.method == "contextual":
            data["content_free"] = list(self.content_free)
        if self.prompt:
            data["prompt"] = self.prompt
        return data

    @classmethod
    def from_data(cls, data: Any, *, labels: Mapping[str, Sequence[Any]], score_norm: str) -> Calibration:
        """Read and check what :meth:`to_data` wrote (untrusted: it comes from a file).

        Args:
            data: the saved data.
            labels: the predictor's label outputs with their labels (JSON values), in order.
            score_norm: the predictor's score normalisation.

        Raises:
            ArtifactError: malformed data, or a prior that does not fit these labels.
        """
        if not isinstance(data, Mapping):
            raise ArtifactError(f"calibration must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"method", "outputs", "rows", "score_norm", "content_free", "prompt"})
        if unknown:
            raise ArtifactError(f"calibration has unknown keys {unknown}")
        method = data.get("method")
        if method not in ("contextual", "batch"):
            raise ArtifactError(f"calibration method must be 'contextual' or 'batch', got {method!r}")
        rows = data.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise ArtifactError(f"calibration rows must be a positive integer, got {rows!r}")
        if data.get("score_norm") != score_norm:
            raise ArtifactError(
                f"the calibration was fitted with score_norm={data.get('score_norm')!r} but the predictor "
                f"scores with {score_norm!r}; refit it"
            )
        prompt = data.get("prompt", "")
        if not isinstance(prompt, str) or (prompt and (len(prompt) != 64 or set(prompt) - set("0123456789abcdef"))):
            raise ArtifactError(f"calibration prompt must be a sha256 hex digest, got {prompt!r}")
        content_free = data.get("content_free", [])
        if (
            not isinstance(content_free, list)
            or len(content_free) > _MAX_CONTENT_FREE
            or not all(isinstance(s, str) and len(s) <= 1000 for s in content_free)
        ):
            raise ArtifactError("calibration content_free must be a short list of strings")
        outputs = data.get("outputs")
        if not isinstance(outputs, Mapping) or sorted(outputs) != sorted(labels):
            have = sorted(outputs) if isinstance(outputs, Mapping) else outputs
            raise ArtifactError(
                f"calibration covers outputs {have}, the predictor's label outputs are {sorted(labels)}"
            )
        priors: dict[str, tuple[float, ...]] = {}
        for name, expected in labels.items():
            entry = outputs[name]
            if not isinstance(entry, Mapping) or set(entry) != {"labels", "prior"}:
                raise ArtifactError(f"calibration of {name!r} must be an object with 'labels' and 'prior'")
            if _json_text(entry["labels"]) != _json_text(list(expected)):  # [true] == [1] in Python
                raise ArtifactError(
                    f"calibration of {name!r} was fitted for labels {entry['labels']!r}, "
                    f"the predictor's labels are {list(expected)!r}; refit it"
                )
            prior = entry["prior"]
            if (
                not isinstance(prior, list)
                or len(prior) != len(expected)
                or not all(isinstance(v, float | int) and not isinstance(v, bool) for v in prior)
                or not all(_types.is_finite(v) and v > 0 for v in prior)
                or abs(math.fsum(prior) - 1.0) > 1e-6
            ):
                raise ArtifactError(
                    f"calibration prior of {name!r} must be {len(expected)} positive numbers summing to 1, got {prior!r}"
                )
            priors[name] = tuple(float(v) for v in prior)
        return cls(
            method=method,
            priors=priors,
            labels={k: tuple(v) for k, v in labels.items()},
            rows=rows,
            content_free=tuple(content_free),
            score_norm=score_norm,  # type: ignore[arg-type]
            prompt=prompt,
        )

    def describe(self) -> str:
        """One line for people: method, rows, and each prior."""
        how = f"{self.method}, {self.rows} {'content-free input' if self.method == 'contextual' else 'row'}"
        how += "s" if self.rows != 1 else ""
        if self.content_free:
            how += " " + ", ".join(repr(s) for s in self.content_free)
        priors = "; ".join(
            f"{n}: " + ", ".join(f"{_label_str(lab)} {p:.3f}" for lab, p in zip(self.labels[n], self.priors[n]))
            for n in self.priors
        )
        return f"{how}, score_norm {self.score_norm}; prior {priors}"


def _label_str(label: Any) -> str:
    return str(_types.to_jsonable(label))


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _log(p: float) -> float:
    return math.log(p) if p > 0 else math.log(_FLOOR)


# ---------------------------------------------------------------- fitting


def fit_calibration(
    predictor: Predict,
    rows: Iterable[Mapping[str, Any]] = (),
    *,
    method: CalibrationMethod = "batch",
    content_free: Sequence[str] = CONTENT_FREE,
    num_threads: int = 1,
) -> Calibration:
    """Fit the label prior of one scored predictor.

    Runs the predictor uncalibrated (one call per input: a scoring request, plus a generating
    one first when free-text outputs come before the labels) and averages its label
    distributions.

    Args:
        predictor: a predictor that scores here (its mode resolves to ``"score"``).
        rows: for ``"batch"``, the inputs (mappings or Examples holding the predictor's input
            fields; labels are not read). Ignored by ``"contextual"``.
        method: ``"batch"`` (mean over ``rows``) or ``"contextual"`` (mean over
            ``content_free`` strings in every input field).
        content_free: the content-free strings for ``"contextual"``.
        num_threads: calls in parallel.

    Returns:
        The fitted :class:`Calibration` (the predictor is not changed).

    Raises:
        ConfigError: the predictor does not score here, or ``"batch"`` got no rows.
    """
    mode, why = predictor.mode_choice()
    if mode != "score":
        raise ConfigError(f"calibration applies to a scored predictor; {predictor!r} would {why}")
    inputs = _fitting_inputs(predictor, rows, method, content_free)
    raw = predictor.copy()
    raw.calibration = None
    raw.mode = "score"

    def one(values: Mapping[str, Any]) -> Mapping[str, Sequence[float]]:
        pred = raw(**values)
        assert pred.raw_probabilities is not None
        return {n: list(d.values()) for n, d in pred.raw_probabilities.items()}

    from oobleck import parallel

    found: dict[int, Mapping[str, Sequence[float]]] = {}
    for i, fut in parallel.run(one, inputs, num_threads=num_threads):
        found[i] = fut.result()
    distributions = [found[i] for i in range(len(inputs))]
    return Calibration.fit(
        method,
        distributions,
        labels=json_labels(predictor.signature),
        content_free=content_free,
        score_norm=predictor.score_norm,
        prompt=predictor.prompt_fingerprint(),
    )


def _fitting_inputs(
    predictor: Predict, rows: Iterable[Mapping[str, Any]], method: str, content_free: Sequence[str]
) -> list[dict[str, Any]]:
    names = list(predictor.signature.input_fields)
    if method == "contextual":
        strings = list(content_free)
        if not strings or len(strings) > _MAX_CONTENT_FREE:
            raise ConfigError(f"content_free must hold 1 to {_MAX_CONTENT_FREE} strings, got {len(strings)}")
        return [dict.fromkeys(names, s) for s in strings]
    if method != "batch":
        raise ConfigError(f"method must be 'contextual' or 'batch', got {method!r}")
    out = []
    for i, row in enumerate(rows):
        missing = [n for n in names if n not in row]
        if missing:
            raise ConfigError(
                f"row {i} has no input(s) {missing} for {predictor!r}; batch calibration reads its inputs"
            )
        out.append({n: row[n] for n in names})
    if not out:
        raise ConfigError("batch calibration needs rows (unlabelled inputs are enough); or use method='contextual'")
    return out


def calibrate(
    program: Module,
    rows: Iterable[Mapping[str, Any]] = (),
    *,
    method: CalibrationMethod = "batch",
    content_free: Sequence[str] = CONTENT_FREE,
    num_threads: int = 1,
) -> Module:
    """A copy of ``program`` whose scored predictors carry a fitted calibration.

    Every predictor that scores here (its mode resolves to ``"score"`` on its LM) and whose
    ``calibration`` is not None gets ``calibration=method`` and the prior fitted by
    :func:`fit_calibration`. For ``"batch"``, each predictor's inputs come from the rows
    directly when the rows hold them; otherwise the program is run on the rows once
    (uncalibrated) and the inputs each predictor received are used.

    Args:
        program: the program (not changed).
        rows: unlabelled inputs for ``"batch"``.
        method: ``"batch"`` (default) or ``"contextual"``.
        content_free: the content-free strings for ``"contextual"``.
        num_threads: calls in parallel.

    Raises:
        ConfigError: no predictor of the program scores here, or ``"batch"`` got no rows.

    Example:
        >>> program = calibrate(program, train_rows)            # doctest: +SKIP
        >>> program(text="fine").probabilities["label"]          # doctest: +SKIP
        {'positive': 0.81, 'negative': 0.19}
    """
    new = program.copy()
    targets = []
    for _, p in new.named_predictors():
        if p.calibration is not None and p.mode_choice()[0] == "score":
            targets.append(p)
    if not targets:
        raise ConfigError(
            f"{type(program).__name__} has no predictor that scores labels here (mode resolving to 'score' "
            "with calibration not None); see Predict.mode_choice()"
        )
    rows = list(rows)
    traced = _traced_inputs(new, targets, rows) if method == "batch" else {}
    for p in targets:
        inputs = traced.get(id(p), rows)
        p.calibration_state = fit_calibration(
            p, inputs, method=method, content_free=content_free, num_threads=num_threads
        )
        p.calibration = method
        if method == "batch":
            # Kept (in memory, never saved) so that a copy under other demos or instructions,
            # as an optimizer makes, refits its own prior on the same rows.
            p.calibration_rows = _fitting_inputs(p, inputs, "batch", content_free)
    return new


def with_calibration_rows(program: Module, rows: Sequence[Mapping[str, Any]], *, limit: int = 32) -> Module:
    """Give batch-calibrated predictors that have no rows yet the inputs of ``rows`` (in place).

    What an optimizer calls on its working copy before searching: every candidate it builds
    (other demos, other instructions) then fits its own batch prior on these inputs the first
    time it scores, instead of carrying a prior fitted under another prompt. Labels are not
    read. Predictors whose inputs are not in the rows are left alone (they need
    :func:`calibrate`, which runs the program to collect them).
    """
    for _, p in program.named_predictors():
        if p.calibration != "batch" or p.calibration_rows:
            continue
        names = list(p.signature.input_fields)
        usable = [r for r in rows if all(n in r for n in names)]
        if usable:
            p.calibration_rows = [{n: r[n] for n in names} for r in usable[:limit]]
    return program


def _traced_inputs(
    program: Module, targets: list[Predict], rows: list[Mapping[str, Any]]
) -> dict[int, list[dict[str, Any]]]:
    """For predictors whose inputs are not in the rows: what they received in one run of the program."""
    need = [p for p in targets if rows and not all(all(n in r for n in p.signature.input_fields) for r in rows)]
    if not need:
        return {}
    from oobleck.example import Example
    from oobleck.trace import trace

    saved = {id(p): p.calibration for p in need}
    found: dict[int, list[dict[str, Any]]] = {id(p): [] for p in need}
    try:
        for p in need:
            p.calibration = None
        for row in rows:
            values = row.inputs() if isinstance(row, Example) and row.input_keys is not None else dict(row)
            with trace() as t:
                program(**values)
            for entry in t.entries:
                if id(entry.predictor) in found and entry.outputs is not None:
                    found[id(entry.predictor)].append(dict(entry.inputs))
    finally:
        for p in need:
            p.calibration = saved[id(p)]
    return found
