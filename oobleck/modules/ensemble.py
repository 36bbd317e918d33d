"""Ensemble: run several programs on the same input and reduce their predictions to one.

:func:`majority` is the usual reducer: the most common value of one output field.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from oobleck.errors import FATAL, ConfigError, OobleckError
from oobleck.example import Prediction
from oobleck.metrics import normalize_text
from oobleck.module import Module

__all__ = ["Ensemble", "majority"]

log = logging.getLogger("oobleck.modules")

Reducer = Callable[[Sequence[Prediction]], Prediction]


def majority(
    predictions: Sequence[Prediction | None], *, field: str | None = None, normalize: bool = True
) -> Prediction:
    """The prediction whose ``field`` value is the most common among ``predictions``.

    Ties go to the value seen first; missing predictions (None) are skipped.

    Args:
        predictions: the candidates (e.g. one per ensemble member).
        field: the output field to vote on (default: the first field of the first prediction).
        normalize: compare values after :func:`~oobleck.metrics.normalize_text`.

    Returns:
        The first prediction that carries the winning value.

    Raises:
        ConfigError: no prediction to vote on.

    Example:
        >>> majority([Prediction(a="Yes"), Prediction(a="no"), Prediction(a="yes.")]).a
        'Yes'
    """
    present = [p for p in predictions if p is not None]
    if not present:
        raise ConfigError("majority() needs at least one prediction")
    name = field if field is not None else next(iter(present[0]), None)
    if name is None:
        raise ConfigError("majority(): the predictions have no fields")
    votes: dict[str, int] = {}
    first: dict[str, Prediction] = {}
    for p in present:
        if name not in p:
            continue
        key = normalize_text(p[name]) if normalize else repr(p[name])
        votes[key] = votes.get(key, 0) + 1
        first.setdefault(key, p)
    if not votes:
        raise ConfigError(f"majority(): no prediction has the field {name!r}")
    best = max(votes.values())
    winner = next(k for k in votes if votes[k] == best)
    return first[winner]


class Ensemble(Module):
    """A program that runs each member program and reduces their outputs.

    Args:
        programs: the member programs (copied).
        reduce: ``fn(predictions) -> prediction``; default :func:`majority`. None returns the
            list of predictions.
        size: run only this many members per call, chosen by a seeded draw keyed on the
            inputs (the same inputs always use the same members).
        seed: the seed of that draw.

    A member whose LM fails or answers unreadably is outvoted and reported in the result's
    ``warnings``; if all fail, the first error is raised. ``ConfigError``,
    ``BudgetExceededError`` and other exceptions always propagate.

    Example:
        >>> from oobleck import FakeLM, Predict
        >>> members = [Predict("q -> a", lm=FakeLM([{"a": x}])) for x in ("1", "2", "1")]
        >>> Ensemble(members)(q="?").a
        '1'
    """

    def __init__(
        self,
        programs: Sequence[Module],
        *,
        reduce: Reducer | None = majority,
        size: int | None = None,
        seed: int = 0,
    ) -> None:
        if not programs:
            raise ConfigError("Ensemble needs at least one program")
        if size is not None and not 1 <= size <= len(programs):
            raise ConfigError(f"size must be between 1 and {len(programs)}, got {size}")
        self.programs = [p.copy() for p in programs]
        self.reduce = reduce
        self.size = size
        self.seed = seed

    def _members(self, inputs: Mapping[str, Any]) -> list[Module]:
        if self.size is None:
            return list(self.programs)
        key = repr(sorted((k, repr(v)) for k, v in inputs.items()))
        rng = random.Random(f"oobleck-ensemble:{self.seed}:{key}")
        picked = sorted(rng.sample(range(len(self.programs)), self.size))
        return [self.programs[i] for i in picked]

    def forward(self, **inputs: Any) -> Any:
        """Run the chosen members and reduce their predictions.

        A member whose LM fails or answers unreadably (an :class:`~oobleck.errors.OobleckError`)
        is outvoted: it is logged, and the reduced prediction's ``warnings`` say how many
        members failed and why. The errors in :data:`oobleck.errors.FATAL` (setup errors, a
        spent budget) and bugs (any other exception) stop the call.
        """
        outputs: list[Prediction] = []
        failures: list[str] = []
        first_error: OobleckError | None = None
        members = self._members(inputs)
        for i, member in enumerate(members):
            try:
                outputs.append(member(**inputs))
            except FATAL:
                raise
            except OobleckError as exc:
                first_error = first_error or exc
                failures.append(f"member {i}: {type(exc).__name__}: {exc}")
                log.warning("ensemble member %d failed: %s: %s", i, type(exc).__name__, exc)
        if not outputs:
            assert first_error is not None
            raise first_error
        if self.reduce is None:
            return outputs
        result = self.reduce(outputs)
        if failures and isinstance(result, Prediction):
            note = f"ensemble: {len(failures)} of {len(members)} members failed ({'; '.join(failures)})"
            result = result.copy()
            object.__setattr__(result, "warnings", (*result.warnings, note))
        return result

    def dump_extra(self, files: Any) -> dict[str, Any]:
        """The size, the seed and the reducer's name (only ``majority`` is rebuilt on load)."""
        return {"size": self.size, "seed": self.seed, "reduce": getattr(self.reduce, "__name__", None)}

    def load_extra(self, extra: Mapping[str, Any], files: Any) -> None:
        """Restore what :meth:`dump_extra` saved (untrusted: every value is checked here).

        Raises:
            ConfigError: the members are missing or not modules, or ``size``, ``seed`` or
                ``reduce`` is missing or out of range (the loader reports it as an ArtifactError).
        """
        programs = self.__dict__.get("programs")
        if not isinstance(programs, list) or not programs or not all(isinstance(p, Module) for p in programs):
            raise ConfigError("a saved Ensemble needs a non-empty list of member programs ('programs')")
        missing = [key for key in ("size", "seed", "reduce") if key not in extra]
        if missing:
            raise ConfigError(f"the saved Ensemble state lacks {missing}; it was written by Ensemble.dump_extra")
        size, seed, name = extra["size"], extra["seed"], extra["reduce"]
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= len(programs)):
            raise ConfigError(f"Ensemble size must be null or an int within 1..{len(programs)}, got {size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"Ensemble seed must be an int, got {seed!r}")
        if name not in ("majority", None):
            raise ConfigError(f"the saved ensemble used the reducer {name!r}; set ensemble.reduce after loading")
        self.size, self.seed = size, seed
        self.reduce = majority if name == "majority" else None
