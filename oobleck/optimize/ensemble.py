"""Ensemble as an optimizer step: combine already compiled programs into one voting program."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oobleck.lm.types import Usage
from oobleck.module import Module
from oobleck.modules.ensemble import Ensemble, Reducer, majority
from oobleck.optimize._base import provenance

__all__ = ["Ensemble", "ensemble", "majority"]


def ensemble(
    programs: Sequence[Module], *, reduce: Reducer | None = majority, size: int | None = None, seed: int = 0
) -> Ensemble:
    """Combine ``programs`` (each copied) into one program that votes with ``reduce``.

    The returned program records ``provenance`` listing each member's own provenance, and the
    LM calls and tokens their compiles cost in total (None when a member's cost is unknown).

    Example:
        >>> from oobleck import FakeLM, Predict
        >>> members = [Predict("q -> a", lm=FakeLM([{"a": x}])) for x in ("1", "2", "2")]
        >>> ensemble(members)(q="?").a
        '2'
    """
    combined = Ensemble(programs, reduce=reduce, size=size, seed=seed)
    members = [getattr(p, "provenance", None) for p in programs]
    combined.provenance = provenance(
        optimizer="Ensemble",
        settings={"reduce": getattr(reduce, "__name__", None), "size": size, "members": len(programs)},
        seed=seed,
        # Combining costs nothing; the program cost what its members' compiles cost (None when
        # a member was not compiled by an optimizer, so its cost is not known).
        lm_calls=_total(members, "lm_calls"),
        tokens=_total(members, "tokens"),
        stopped_early=any(bool(m.get("stopped_early")) for m in members if isinstance(m, dict)),
        members=members,
    )
    usages = [p.compile_usage for p in programs if p.compile_usage is not None]
    combined.compile_usage = sum(usages, Usage()) if len(usages) == len(programs) else None
    return combined


def _total(members: Sequence[Any], key: str) -> int | None:
    values = [m.get(key) if isinstance(m, dict) else None for m in members]
    known = [v for v in values if isinstance(v, int)]
    return sum(known) if len(known) == len(values) else None
