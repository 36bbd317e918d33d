"""Evaluation: run a program over a devset, score every row, and summarise.

``evaluate(program, devset, metric)`` (also ``oobleck.evaluate``) returns an
:class:`EvaluationResult` holding one :class:`EvalRow` per example (the prediction or the
error, the score and the metric's feedback), the mean score in percent (0–100), the summed
usage, and writers for JSON and CSV. Each row is run by :func:`oobleck._run.run_example`, like
every other example run. A failing row (an LM error, a parse failure, a metric that raised)
scores ``failure_score`` and is counted, not fatal, up to ``max_errors``; one more raises
:class:`~oobleck.errors.TooManyErrorsError`. A missing LM (ConfigError) is fatal at once, since
every row would fail the same way.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oobleck import _progress, _types
from oobleck._files import atomic_write
from oobleck._run import run_example
from oobleck._version import __version__
from oobleck.errors import ConfigError, TooManyErrorsError
from oobleck.example import Example, Prediction
from oobleck.lm.types import Usage
from oobleck.metrics import metric_name
from oobleck.module import Module
from oobleck.parallel import run

__all__ = ["EvalRow", "EvaluationResult", "evaluate"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class EvalRow:
    """The outcome of one example.

    Attributes:
        index: the example's position in the devset.
        example: the example.
        prediction: what the program returned (None when it failed, or when outputs were not kept).
        score: the metric's score as a float (``failure_score`` for a failed row).
        error: ``"ExceptionType: message"`` when the row failed, else None.
        usage: what this row cost.
        feedback: the metric's feedback on this row, when it returned a score with feedback.
    """

    index: int
    example: Example
    prediction: Prediction | None
    score: float
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    feedback: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """Everything one evaluation produced.

    Attributes:
        rows: one EvalRow per devset example, in devset order.
        score: the mean score in percent (0–100); failed rows count with ``failure_score``.
        metric: the metric's name.
        usage: the summed usage of the whole run (cache hits included, costing no tokens).
    """

    rows: list[EvalRow]
    score: float
    metric: str
    usage: Usage

    @property
    def errors(self) -> int:
        """How many rows failed."""
        return sum(1 for r in self.rows if r.error is not None)

    @property
    def scores(self) -> list[float]:
        """The per-row scores, in devset order."""
        return [r.score for r in self.rows]

    def table(self, *, max_rows: int = 10, width: int = 40) -> str:
        """A plain-text summary: the score line, then the first ``max_rows`` rows.

        Args:
            max_rows: rows to show (0 for the summary line only).
            width: the maximum width of each cell.
        """
        u = self.usage
        lines = [
            f"{self.metric}: {self.score:.2f}% over {len(self.rows)} examples, {self.errors} errors; "
            f"{u.calls} LM calls, {u.cache_hits} cache hits, {u.total_tokens} tokens"
        ]
        shown = self.rows[:max_rows]
        if not shown:
            return lines[0]
        header = ["#", "inputs", "labels", "prediction", "score"]
        body = []
        for r in shown:
            inputs = r.example.inputs() if r.example.input_keys is not None else r.example.to_dict()
            pred = r.error if r.error is not None else (_brief(r.prediction.to_dict()) if r.prediction else "")
            body.append([str(r.index), _brief(inputs), _brief(r.example.labels()), pred, f"{r.score:.3g}"])
        cols = [[_clip(c, width) for c in col] for col in zip(header, *body)]
        widths = [max(len(c) for c in col) for col in cols]
        for i in range(len(body) + 1):
            lines.append("  ".join(col[i].ljust(w) for col, w in zip(cols, widths)).rstrip())
        if len(self.rows) > max_rows:
            lines.append(f"... {len(self.rows) - max_rows} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON data (sorted keys when dumped by :meth:`to_json`)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "oobleck_version": __version__,
            "metric": self.metric,
            "score": self.score,
            "errors": self.errors,
            "usage": self.usage.model_dump(exclude={"latency_s"}),
            "rows": [
                {
                    "index": r.index,
                    "example": _types.to_jsonable(_types.stable_order(r.example.to_dict())),
                    "inputs": list(r.example.input_keys) if r.example.input_keys is not None else None,
                    "prediction": _types.to_jsonable(_types.stable_order(r.prediction.to_dict()))
                    if r.prediction is not None
                    else None,
                    "score": r.score,
                    "feedback": r.feedback,
                    "error": r.error,
                }
                for r in self.rows
            ],
        }

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON (sorted keys, UTF-8), through the one atomic writer.

        Raises:
            WriteError: the path was refused (a symlink, device, folder, read-only file or an
                input of the running command) or the write failed; nothing was changed.
        """
        text = json.dumps(self.to_dict(), sort_keys=True, indent=1, ensure_ascii=False) + "\n"
        atomic_write(path, text.encode("utf-8"))

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one CSV line per row: index, example fields, ``pred.<field>`` columns, score, error.

        Non-string values are written as JSON. A ``feedback`` column follows the score when the
        metric gave feedback on any row.
        """
        ex_keys = _union_keys(r.example.to_dict() for r in self.rows)
        pred_keys = _union_keys(r.prediction.to_dict() for r in self.rows if r.prediction is not None)
        feedback = any(r.feedback is not None for r in self.rows)
        fh = io.StringIO(newline="")  # rendered whole in memory, then written atomically
        writer = csv.writer(fh)
        writer.writerow(
            [
                "index",
                *ex_keys,
                *(f"pred.{k}" for k in pred_keys),
                "score",
                *(["feedback"] if feedback else []),
                "error",
            ]
        )
        for r in self.rows:
            pred = r.prediction.to_dict() if r.prediction is not None else {}
            writer.writerow(
                [
                    r.index,
                    *(_cell(r.example.get(k)) for k in ex_keys),
                    *(_cell(pred.get(k)) for k in pred_keys),
                    r.score,
                    *([r.feedback or ""] if feedback else []),
                    r.error or "",
                ]
            )
        atomic_write(path, fh.getvalue().encode("utf-8"))

    def __repr__(self) -> str:
        return f"EvaluationResult(score={self.score:.2f}, n={len(self.rows)}, errors={self.errors}, metric={self.metric!r})"


def _union_keys(dicts: Iterable[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(_types.to_jsonable(_types.stable_order(value)), ensure_ascii=False, sort_keys=True)


def _brief(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}" for k, v in values.items())


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def evaluate(
    program: Module,
    devset: Sequence[Example],
    metric: Callable[..., Any],
    *,
    num_threads: int = 1,
    progress: bool = True,
    max_errors: int | None = 10,
    failure_score: float = 0.0,
    return_outputs: bool = True,
) -> EvaluationResult:
    """Run ``program`` on every example of ``devset`` and score it with ``metric``.

    Args:
        program: the program to run (called with each example's inputs).
        devset: examples with inputs marked (``Example.with_inputs``).
        metric: ``fn(example, prediction, trace=None)``, called with ``trace=None``; it returns a
            number, a bool, or a score with feedback (see :func:`oobleck.metrics.outcome`),
            whose feedback is kept on the row.
        num_threads: worker threads (each carries the caller's ``oobleck.context``).
        progress: show a progress bar (rows done, score so far, LM calls, ETA) when stderr
            is a terminal; False never does. Inside a compile the compile's bar counts the rows.
        max_errors: how many failed rows are tolerated (None: any number); one more raises.
        failure_score: the score of a failed row.
        return_outputs: keep every prediction in the result (False keeps only scores).

    Returns:
        An EvaluationResult; its ``score`` is the mean in percent (0–100).

    Raises:
        TooManyErrorsError: more than ``max_errors`` rows failed.
        ConfigError: the program has no LM (or another setup error), a row has no inputs, or
            ``failure_score`` is not a finite number.

    Example:
        >>> from oobleck import Example, FakeLM, Predict
        >>> from oobleck.metrics import exact_match
        >>> qa = Predict("question -> answer", lm=FakeLM([{"answer": "4"}, {"answer": "5"}]))
        >>> dev = [Example(question=q, answer="4").with_inputs("question") for q in ("2+2?", "1+3?")]
        >>> evaluate(qa, dev, exact_match, progress=False).score
        50.0
    """
    if (
        isinstance(failure_score, bool)
        or not isinstance(failure_score, (int, float))
        or not math.isfinite(failure_score)
    ):
        raise ConfigError(f"failure_score must be a finite number, got {failure_score!r}")
    examples = list(devset)
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example) or ex.input_keys is None:
            raise ConfigError(f"devset[{i}] has no inputs marked; build rows as Example(...).with_inputs('field', ...)")
    name = metric_name(metric)
    failures: list[tuple[int, BaseException]] = []
    lock = threading.Lock()

    stopped: list[TooManyErrorsError] = []  # set once the cap is passed: later rows are not sent

    def one(item: tuple[int, Example]) -> EvalRow:
        index, ex = item
        if stopped:
            raise stopped[0]
        result = run_example(program, ex, metric, metric_trace=False, failure_score=failure_score)
        if result.error is not None:
            with lock:
                failures.append((index, result.error))
                if max_errors is not None and len(failures) > max_errors and not stopped:
                    stopped.append(_too_many(list(failures), max_errors, len(examples)))
            log.debug("evaluate: row %d failed: %r", index, result.error)
            if stopped:
                raise stopped[0]
        return EvalRow(
            index=index,
            example=ex,
            prediction=result.prediction if return_outputs else None,
            score=result.score,
            error=result.error_text,
            usage=result.usage,
            feedback=result.feedback,
        )

    rows: list[EvalRow | None] = [None] * len(examples)
    total = 0.0
    done = 0
    with (
        _progress.bar(len(examples), f"evaluate ({name})", enabled=progress) as shown,
        contextlib.closing(run(one, list(enumerate(examples)), num_threads=num_threads)) as results,
    ):
        for i, fut in results:
            row = fut.result()
            rows[i] = row
            total += row.score
            done += 1
            if shown is not None:
                shown.advance(1, score=100 * total / done)
    done_rows = [r for r in rows if r is not None]
    usage = sum((r.usage for r in done_rows), Usage())
    # summed exactly, in devset order: the score does not depend on which thread finished first
    score = 100.0 * math.fsum(r.score for r in done_rows) / len(done_rows) if done_rows else 0.0
    return EvaluationResult(rows=done_rows, score=score, metric=name, usage=usage)


def _too_many(failures: list[tuple[int, BaseException]], cap: int | None, n: int) -> TooManyErrorsError:
    first_i, first = failures[0]
    last_i, last = failures[-1]
    msg = (
        f"{len(failures)} of {n} examples failed, more than max_errors={cap}. "
        f"First (row {first_i}): {type(first).__name__}: {first}. "
        f"Last (row {last_i}): {type(last).__name__}: {last}. "
        "Fix the cause, or raise max_errors= (None tolerates any number)."
    )
    err = TooManyErrorsError(msg, list(failures))
    err.__cause__ = last
    return err
