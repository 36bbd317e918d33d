"""BestOfN: run a module up to ``n`` times and keep the first answer that is good enough.

Each attempt runs the module under ``oobleck.context(sample_index=...)`` with its own index, so
a cache never hands back an earlier attempt's answer, and attempts after the first sample at
``temperature`` (applied to predictors whose config names no temperature), so a greedy backend
gives a different answer too. ``reward_fn(inputs, prediction)`` scores each attempt; the first
whose reward reaches ``threshold`` is returned, else the best one. :class:`~oobleck.modules.Refine`
adds feedback from each attempt to the next.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from oobleck.context import context, current
from oobleck.errors import FATAL, ConfigError
from oobleck.example import Prediction
from oobleck.metrics import outcome
from oobleck.module import Module

__all__ = ["BestOfN", "reward_of"]

RewardFn = Callable[[Mapping[str, Any], Prediction], Any]


def reward_of(value: Any) -> tuple[float, str | None]:
    """The score and feedback in what a reward function returned.

    A number or bool, a ``(score, feedback)`` pair, or anything a metric may return (a mapping
    with ``score`` and ``feedback``, an object with ``.score``; see :func:`oobleck.metrics.outcome`).

    Example:
        >>> reward_of(0.5), reward_of((0, "too long")), reward_of({"score": 1, "feedback": "ok"})
        ((0.5, None), (0.0, 'too long'), (1.0, 'ok'))
    """
    if isinstance(value, tuple) and len(value) == 2:
        score, feedback = value
        return outcome({"score": score, "feedback": feedback})
    return outcome(value)


class BestOfN(Module):
    """Up to ``n`` attempts of ``module``; the first whose reward reaches ``threshold``, else the best.

    Args:
        module: the program to run (any Module).
        n: the most attempts (at least 1).
        reward_fn: ``reward_fn(inputs, prediction)``: a number, a ``(score, feedback)`` pair, or
            a mapping with ``score`` and ``feedback``.
        threshold: stop at the first attempt whose score is at least this.
        temperature: the sampling temperature of attempts after the first.
        max_errors: attempts that raise (a parse failure, an LM error) before the error is
            raised (default: ``n``, so an error is raised only when every attempt failed).
            A ConfigError or BudgetExceededError is always raised at once.

    The prediction is the chosen attempt's, with ``attempts``: one dict per attempt run, with
    ``index``, ``reward``, ``feedback``, ``error`` and ``outputs``.

    Example:
        >>> from oobleck import FakeLM, Predict
        >>> qa = Predict("question -> answer", lm=FakeLM([{"answer": "3"}, {"answer": "4"}]))
        >>> best = BestOfN(qa, 3, lambda inputs, pred: pred.answer == "4", threshold=1.0)
        >>> out = best(question="2+2?")
        >>> out.answer, [a["reward"] for a in out.attempts]
        ('4', [0.0, 1.0])
    """

    #: Refine sets this: feedback from each attempt goes into the next.
    _feedback = False

    def __init__(
        self,
        module: Module,
        n: int,
        reward_fn: RewardFn,
        threshold: float,
        *,
        temperature: float = 1.0,
        max_errors: int | None = None,
    ) -> None:
        if not isinstance(module, Module):
            raise ConfigError(f"{type(self).__name__} wraps a Module, got {type(module).__name__}")
        if not callable(reward_fn):
            raise ConfigError(f"reward_fn must be a function (inputs, prediction) -> score, got {reward_fn!r}")
        self.module = module
        self.reward_fn: RewardFn | None = reward_fn
        self._configure(n, threshold, temperature, n if max_errors is None else max_errors)

    def _configure(self, n: Any, threshold: Any, temperature: Any, max_errors: Any) -> None:
        """Check and set the settings (the same rules when built and when loaded).

        Raises:
            ConfigError: ``n`` or ``max_errors`` is not an int >= 1, or ``threshold`` or
                ``temperature`` is not a number.
        """
        for name, value in (("n", n), ("max_errors", max_errors)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (threshold, temperature)):
            raise ConfigError(f"threshold and temperature must be numbers, got {threshold!r}, {temperature!r}")
        self.n, self.max_errors = n, max_errors
        self.threshold, self.temperature = float(threshold), float(temperature)

    def forward(self, **inputs: Any) -> Prediction:
        """Run the attempts; returns the chosen prediction with ``attempts``."""
        reward_fn = self._reward_fn()
        attempts: list[dict[str, Any]] = []
        best: tuple[float, Prediction] | None = None
        errors = 0
        last_error: Exception | None = None
        hint = current().hint
        base = current().sample_index * self.n
        for k in range(self.n):
            settings: dict[str, Any] = {"sample_index": base + k}
            if k:
                settings["temperature"] = self.temperature
            if self._feedback and hint:
                settings["hint"] = hint
            try:
                with context(**settings):
                    pred = self.module(**inputs)
                if not isinstance(pred, Prediction):
                    pred = Prediction(pred if isinstance(pred, Mapping) else {"output": pred})
                score, feedback = reward_of(reward_fn(dict(inputs), pred))
            except FATAL:
                raise
            except Exception as exc:
                errors += 1
                last_error = exc
                attempts.append(_attempt(k, None, None, f"{type(exc).__name__}: {exc}", None))
                if errors >= self.max_errors:
                    raise
                continue
            attempts.append(_attempt(k, score, feedback, None, pred))
            if best is None or score > best[0]:
                best = (score, pred)
            if score >= self.threshold:
                break
            if self._feedback:
                hint = _hint(score, self.threshold, feedback, pred)
        if best is None:  # every attempt failed, fewer than max_errors times
            assert last_error is not None
            raise last_error
        chosen = best[1]
        out = Prediction({**chosen, "attempts": attempts}, usage=chosen.usage, warnings=chosen.warnings)
        return out

    def _reward_fn(self) -> RewardFn:
        if self.reward_fn is None:
            raise ConfigError(
                f"this {type(self).__name__} has no reward_fn (artifacts never store code): set "
                f"program.reward_fn = your_function after loading"
            )
        return self.reward_fn

    def dump_extra(self, files: Any) -> dict[str, Any]:
        """The settings (the reward function is code, never saved)."""
        return {
            "n": self.n,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "max_errors": self.max_errors,
        }

    def load_extra(self, extra: dict[str, Any], files: Any) -> None:
        """Restore the settings; the reward function must be set again (``program.reward_fn = ...``)."""
        n = extra.get("n")
        self._configure(n, extra.get("threshold"), extra.get("temperature", 1.0), extra.get("max_errors", n))
        self.reward_fn = self.__dict__.get("reward_fn")  # a program's own, when loaded into one


def _attempt(
    index: int, reward: float | None, feedback: str | None, error: str | None, pred: Prediction | None
) -> dict[str, Any]:
    outputs = {k: v for k, v in pred.items() if k != "attempts"} if pred is not None else None
    return {"index": index, "reward": reward, "feedback": feedback, "error": error, "outputs": outputs}


def _hint(score: float, threshold: float, feedback: str | None, pred: Prediction) -> str:
    """What Refine tells the next attempt about the last one."""
    shown = {k: v for k, v in pred.items() if k not in ("attempts", "trajectory")}
    try:
        answer = json.dumps(shown, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        answer = repr(shown)
    if len(answer) > 500:
        answer = answer[:500] + " ..."
    note = feedback or "it was not good enough; try a different answer"
    return f"An earlier attempt answered {answer} and scored {score:g} (needed {threshold:g}). Feedback on it: {note}"
