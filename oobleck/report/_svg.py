"""The report's plot: score against LM calls (or training steps) as one inline SVG, no script.

Every point carries ``data-x`` and ``data-y`` (its raw values) and a ``<title>`` a browser shows
on hover; the best score so far is drawn as a step line. All text is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from oobleck import _fmt

__all__ = ["Point", "plot_svg"]

_W, _H = 720, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 16, 44


@dataclass(frozen=True, slots=True)
class Point:
    """One scored candidate.

    Attributes:
        x: LM calls spent when its scoring ended (or the training step).
        y: its score in percent.
        label: what it was (shown on hover).
        kind: ``"start"``, ``"chosen"``, ``"dropped"`` or ``"candidate"``.
    """

    x: float
    y: float
    label: str
    kind: str = "candidate"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``lo..hi``."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out: list[float] = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _tick_text(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:g}"


def plot_svg(points: list[Point], *, x_label: str, y_label: str = "score (%)") -> str:
    """The plot as an ``<svg>`` element (an empty string for no points)."""
    if not points:
        return ""
    xs, ys = [p.x for p in points], [p.y for p in points]
    x_hi = max(max(xs), 1.0) * 1.04  # the last point clear of the frame
    y_lo, y_hi = min(ys), max(ys)
    if 0.0 <= y_lo and y_hi <= 100.0:  # percent scores: a range that starts on a round number
        y_lo = max(0.0, math.floor((y_lo - 5) / 10) * 10)
        y_hi = min(100.0, math.ceil((y_hi + 5) / 10) * 10)
    if y_hi - y_lo < 1e-9:
        pad = max(1.0, abs(y_hi) * 1e-6)  # not just 1: beside a huge value, 1 is lost to rounding
        y_lo, y_hi = y_lo - pad, y_hi + pad
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(x: float) -> float:
        return round(_LEFT + pw * x / x_hi, 1)

    def py(y: float) -> float:
        return round(_TOP + ph * (1 - (y - y_lo) / (y_hi - y_lo)), 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{escape(y_label)} against {escape(x_label)}" class="plot">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" fill="#fbfbfd" stroke="#d0d4dc"/>',
    ]
    for t in _ticks(y_lo, y_hi):
        y = py(t)
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + pw}" y1="{y}" y2="{y}" stroke="#e6e8ee"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4}" text-anchor="end" class="tick">{_tick_text(t)}</text>')
    for t in _ticks(0.0, x_hi):
        x = px(t)
        parts.append(f'<line x1="{x}" x2="{x}" y1="{_TOP + ph}" y2="{_TOP + ph + 4}" stroke="#888"/>')
        parts.append(f'<text x="{x}" y="{_TOP + ph + 18}" text-anchor="middle" class="tick">{_tick_text(t)}</text>')
    parts.append(f'<text x="{_LEFT + pw / 2}" y="{_H - 6}" text-anchor="middle" class="axis">{escape(x_label)}</text>')
    parts.append(
        f'<text transform="translate(14 {_TOP + ph / 2}) rotate(-90)" text-anchor="middle" class="axis">'
        f"{escape(y_label)}</text>"
    )
    # The best score so far, as a step line through the points in x order.
    ordered = sorted((p for p in points if p.kind != "dropped"), key=lambda p: p.x)
    if ordered:
        best = ordered[0].y
        path = [f"M{px(ordered[0].x)},{py(best)}"]
        for p in ordered[1:]:
            path.append(f"H{px(p.x)}")
            if p.y > best:
                best = p.y
                path.append(f"V{py(best)}")
        path.append(f"H{px(max(xs))}")
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="#7a8fb8" stroke-width="1.5" class="best"/>')
    style = {
        "candidate": 'r="5" fill="#4a6fb5"',
        "dropped": 'r="5" fill="#ffffff" stroke="#4a6fb5" stroke-width="1.5"',
        "start": 'r="6" fill="#9a9a9a"',
        "chosen": 'r="8" fill="#e08a1e" stroke="#7a4300" stroke-width="1.5"',
    }
    for p in sorted(points, key=lambda p: p.kind == "chosen"):  # the chosen one on top
        title = f"{p.label}: {_fmt.score(p.y)} at {_tick_text(p.x)} {x_label}"
        parts.append(
            f'<circle cx="{px(p.x)}" cy="{py(p.y)}" {style.get(p.kind, style["candidate"])} class="pt {p.kind}" '
            f'data-x="{p.x:g}" data-y="{p.y:g}"><title>{escape(title)}</title></circle>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
