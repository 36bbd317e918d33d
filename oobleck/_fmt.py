"""Numbers as people read them: scores to one decimal, seconds to two significant digits.

Every place that shows a number to a person (the compile summary, ``oobleck inspect``, the HTML
report) formats it here, so nobody reads ``66.66666666666667`` or ``latency_s=5.317892226998083``.
JSON output keeps the raw values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["count", "interval", "number", "points", "score", "seconds"]


def score(value: Any) -> str:
    """A score in percent to one decimal (``"-"`` for a missing one).

    Example:
        >>> score(66.66666666666667), score(None)
        ('66.7', '-')
    """
    if not _finite(value):
        return "-"
    return f"{float(value):.1f}"


def points(value: Any) -> str:
    """A signed difference in points to one decimal.

    Example:
        >>> points(8.333333), points(-2.0)
        ('+8.3', '-2.0')
    """
    if not _finite(value):
        return "-"
    return f"{float(value):+.1f}"


def seconds(value: Any) -> str:
    """A duration to two significant digits, with its unit.

    Example:
        >>> seconds(5.317892226998083), seconds(0.0123), seconds(1234.5)
        ('5.3 s', '0.012 s', '1,200 s')
    """
    if not _finite(value):
        return "-"
    v = float(f"{float(value):.2g}")
    return f"{v:,.0f} s" if abs(v) >= 100 else f"{v:g} s"


def count(value: Any) -> str:
    """An integer with thousands separators (``"-"`` when unknown).

    Example:
        >>> count(15948), count(None)
        ('15,948', '-')
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{round(value):,}"


def number(value: Any) -> str:
    """Any JSON scalar for display: a float to at most 4 significant digits, others as they are.

    Example:
        >>> number(0.30000000000000004), number(5.317892226998083), number(True), number("x")
        ('0.3', '5.318', 'true', 'x')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return str(value)
    return str(value)


def interval(v: Mapping[str, Any]) -> str:
    """A paired verdict (``gain``, ``low``, ``high``, ``n``, ``confidence``, ``significant``) in words.

    Example:
        >>> interval({"gain": 8.33333, "low": -1.2, "high": 17.9, "n": 24, "confidence": 0.95,
        ...           "significant": False})
        '+8.3 points (95% interval -1.2 to +17.9, 24 paired rows; not significant)'
    """
    confidence = v.get("confidence", 0.95)
    pct = round(float(confidence) * 100) if _finite(confidence) else "?"  # hand-edited JSON may hold anything
    sig = "significant" if v.get("significant") else "not significant"
    return (
        f"{points(v.get('gain'))} points ({pct}% interval {points(v.get('low'))} to {points(v.get('high'))}, "
        f"{v.get('n', '?')} paired rows; {sig})"
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
