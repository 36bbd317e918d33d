"""A compile's provenance as a short block of text (``oobleck inspect``), its numbers rounded.

The raw record stays available with ``oobleck inspect --json``; here it is read as a person
would: who compiled, on what data, at what cost, with what result, and the candidates as a
small table.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from oobleck import _fmt
from oobleck.optimize._summary import CompileSummary, candidates_table

__all__ = ["compact", "provenance_lines", "text_table"]

_PAD = " " * 11
#: Provenance keys the block shows in its own lines (the rest are listed compactly after).
_SHOWN = frozenset(
    {
        "optimizer",
        "seed",
        "oobleck_version",
        "trainset_sha256",
        "trainset_size",
        "valset_sha256",
        "valset_size",
        "lm_calls",
        "tokens",
        "stopped_early",
        "stop_reason",
        "estimate",
        "scores",
        "settings",
    }
)


def compact(value: Any, *, width: int = 100) -> str:
    """``value`` in one short line: floats rounded, long text cut with ``...``."""

    def show(v: Any) -> str:
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{k}: {show(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(show(x) for x in v) + "]"
        return _fmt.number(v)

    text = show(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def text_table(headings: Sequence[str], rows: Sequence[Sequence[Any]], *, mark: int | None = None) -> list[str]:
    """A plain-text table, columns aligned, numbers rounded (``*`` before the row ``mark``)."""
    cells = [[_cell(h, v) for h, v in zip(headings, row)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headings)]
    out = ["  " + "  ".join(h.ljust(w) for h, w in zip(headings, widths)).rstrip()]
    for n, row in enumerate(cells):
        out.append(("* " if n == mark else "  ") + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return out


def _cell(heading: str, value: Any) -> str:
    if heading in ("score", "start") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _fmt.score(value)
    return compact(value, width=40)


def provenance_lines(provenance: Mapping[str, Any] | None) -> list[str]:
    """The ``provenance`` block of ``oobleck inspect`` (a note when there is none)."""
    if not provenance:
        return ["provenance none: this artifact was saved from a program, not by a compile"]
    p = provenance
    out = [
        f"compiled   by {p.get('optimizer', '?')}, seed {p.get('seed', '-')}, oobleck {p.get('oobleck_version', '?')}"
    ]
    data = [
        f"{what} {_fmt.count(p.get(f'{what}_size'))} rows (sha256 {str(p.get(f'{what}_sha256'))[:12]})"
        for what in ("trainset", "valset")
        if p.get(f"{what}_size") is not None
    ]
    if data:
        out.append("data       " + ", ".join(data))
    summary = CompileSummary.from_provenance(p).lines()
    recorded = p.get("lm_calls") is not None or p.get("tokens") is not None
    out.append("cost       " + (summary[0].partition(": ")[2] if recorded else "not recorded"))
    out += [_PAD + line for line in summary[1:]]
    settings = p.get("settings")
    if isinstance(settings, Mapping):
        flat = [
            f"{k}={'{' + ', '.join(v) + '}' if isinstance(v, Mapping) else compact(v, width=60)}"
            for k, v in settings.items()
            if v is not None
        ]
        wrapped = textwrap.wrap("  ".join(flat), width=100, break_long_words=False, break_on_hyphens=False)
        out += [("settings   " if i == 0 else _PAD) + line for i, line in enumerate(wrapped)]
    for key in sorted(k for k in p if k not in _SHOWN):
        value = p[key]
        if not isinstance(value, Mapping):
            out.append(f"{key:<10} {compact(value)}")
            continue
        shown = [(k, v) for k, v in value.items() if not str(k).endswith("sha256")]  # hashes: in --json
        for i, (k, v) in enumerate(shown):
            out.append(f"{key if i == 0 else '':<10} {k}: {_brief(v)}")

    scores = p.get("scores")
    if isinstance(scores, Mapping):
        headings, rows, chosen = candidates_table(scores)
        if rows:
            out += ["", f"== {len(rows)} candidates (score on the selection rows; * chosen) =="]
            out += text_table(headings, rows, mark=chosen)
    return out


def _brief(value: Any) -> str:
    """A nested value in one line: a mapping as ``k=v`` pairs, a long list as its length."""
    if isinstance(value, Mapping):
        return compact("  ".join(f"{k}={_brief(v)}" for k, v in value.items()), width=100)
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"[{len(value)} items]"
    return compact(value, width=100)
