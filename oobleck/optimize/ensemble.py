"""Ensemble as an optimizer step: combine already compiled programs into one voting program."""

from __future__ import annotations

from collections.abc import Sequence

from oobleck.module import Module
from oobleck.modules.ensemble import Ensemble, Reducer, majority

__all__ = ["Ensemble", "ensemble", "majority"]


def ensemble(
    programs: Sequence[Module], *, reduce: Reducer | None = majority, size: int | None = None, seed: int = 0
) -> Ensemble:
    """Combine ``programs`` (each copied) into one program that votes with ``reduce``.

    The returned program records ``provenance`` listing each member's own provenance.

    Example:
        >>> from oobleck import FakeLM, Predict
        >>> members = [Predict("q -> a", lm=FakeLM([{"a": x}])) for x in ("1", "2", "2")]
        >>> ensemble(members)(q="?").a
        '2'
    """
    combined = Ensemble(programs, reduce=reduce, size=size, seed=seed)
    combined.provenance = {  # type: ignore[attr-defined]
        "optimizer": "Ensemble",
        "settings": {"reduce": getattr(reduce, "__name__", None), "size": size, "members": len(programs)},
        "seed": seed,
        "members": [getattr(p, "provenance", None) for p in programs],
        "lm_calls": 0,
        "tokens": 0,
        "stopped_early": False,
    }
    return combined
