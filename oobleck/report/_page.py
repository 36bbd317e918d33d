"""The compile report as one self-contained HTML page (inline CSS and SVG; no script, no asset).

Sections: the result (before and after, with the paired interval and the verdict), the cost,
the score-versus-LM-calls plot, the candidates table, and the final prompt of each predictor
(what the program sends), then the settings. Every piece of text that comes from the artifact
is escaped, so an instruction holding ``<script>`` shows as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from oobleck import _fmt
from oobleck.optimize._summary import CompileSummary, before_after, candidates_table
from oobleck.report._svg import Point, plot_svg

__all__ = ["PredictorView", "ReportData", "page", "plot_points"]


@dataclass(frozen=True, slots=True)
class PredictorView:
    """What the report shows of one predictor.

    Attributes:
        name: its path in the program.
        signature: the signature as text.
        adapter: the adapter line (name, version, or auto).
        adapter_reason: why it has that adapter.
        demos: how many demos it carries.
        messages: the prompt it sends, as ``(role, content)`` with the inputs as placeholders.
        soft_prompt: the soft prompt's description (None without one).
        lm: the LM identity it was saved with.
    """

    name: str
    signature: str
    adapter: str
    adapter_reason: str | None
    demos: int
    messages: list[tuple[str, str]]
    soft_prompt: Mapping[str, Any] | None = None
    lm: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the page shows, read from an artifact or a live compiled program.

    Attributes:
        title: the page title (the artifact's name).
        program: the program's class.
        oobleck_version: the version that wrote it.
        provenance: the compile's provenance ({} when it has none).
        predictors: one view per predictor.
        summary: the compile summary (None without provenance).
    """

    title: str
    program: str
    oobleck_version: str
    provenance: Mapping[str, Any]
    predictors: list[PredictorView]
    summary: CompileSummary | None = None
    notes: list[str] = field(default_factory=list)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float:
    """A count from the provenance as a number (0 when it is missing or not a number: hand-edited JSON)."""
    return float(value) if _is_number(value) else 0.0


def plot_points(scores: Mapping[str, Any]) -> tuple[list[Point], str]:
    """The plot's points and its x-axis label, from a compile's ``scores``."""
    trajectory = scores.get("trajectory")
    if isinstance(trajectory, list) and trajectory:
        points, n = [], 0
        for t in trajectory:
            if not isinstance(t, Mapping) or not isinstance(t.get("score"), (int, float)):
                continue
            kind = "chosen" if t.get("chosen") else "start" if t.get("start") else "dropped" if t.get("dropped") else ""
            n += 1
            label = {
                "chosen": "chosen (the starting program)" if t.get("start") else "chosen",
                "start": "the starting program",
                "dropped": f"candidate {n} (dropped by racing)",
            }.get(kind, f"candidate {n}")
            points.append(Point(_number(t.get("lm_calls")), float(t["score"]), label, kind or "candidate"))
        return points, "LM calls (cache hits included)"
    members = scores.get("members")
    if isinstance(members, list) and members:
        points, spent = [], 0
        for m in members:
            if not isinstance(m, Mapping):
                continue
            spent += int(_number(m.get("calls")) + _number(m.get("cache_hits")))
            if isinstance(m.get("selection_score"), (int, float)):
                kind = "chosen" if m.get("name") == scores.get("winner") else "candidate"
                points.append(Point(float(spent), float(m["selection_score"]), str(m.get("name")), kind))
        return points, "LM calls (members run in turn; cache hits included)"
    predictors = scores.get("predictors")
    if isinstance(predictors, Mapping):
        points = []
        for name, report in predictors.items():
            history = report.get("history") if isinstance(report, Mapping) else None
            best = report.get("best_step") if isinstance(report, Mapping) else None
            for item in history if isinstance(history, list) else []:
                if isinstance(item, list) and len(item) == 2 and all(_is_number(v) for v in item):
                    kind = "chosen" if item[0] == best else "start" if item[0] == 0 else "candidate"
                    points.append(Point(float(item[0]), float(item[1]), f"{name} step {item[0]}", kind))
        return points, "training step"
    return [], ""


# ---------------------------------------------------------------- pieces


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(headings: Sequence[str], rows: Sequence[Sequence[Any]], *, mark: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f"<td>{_e(_cell(h, v))}</td>" for h, v in zip(headings, row))
        body.append(f'<tr class="chosen">{cells}</tr>' if i == mark else f"<tr>{cells}</tr>")
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _cell(heading: str, value: Any) -> str:
    if heading in ("score", "start") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _fmt.score(value)
    if isinstance(value, (Mapping, list)):
        return ", ".join(map(str, value))[:60]
    return _fmt.number(value)


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    return '<table class="facts">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _result(data: ReportData) -> str:
    assert data.summary is not None
    scores = data.summary.scores
    pair = before_after(scores)
    blocks = []
    for key, what in (("selection", "on the selection rows"), ("confirm", "on the confirming rows")):
        if pair[key] is not None:
            a, b = pair[key]
            blocks.append(
                f'<div class="ba"><div class="what">{_e(what)}</div><span class="before">{_e(_fmt.score(a))}</span>'
                f'<span class="arrow">&rarr;</span><span class="after">{_e(_fmt.score(b))}</span>'
                f'<span class="delta">{_e(_fmt.points(b - a))} points</span></div>'
            )
    if not blocks:
        blocks.append(f'<p class="muted">{_e(data.summary.optimizer)} recorded no scores to compare.</p>')
    v = scores.get("verdict")
    verdict = ""
    if isinstance(v, Mapping):
        if v.get("confirmed"):
            cls = "ok" if v.get("significant") else "warn"
            word = "confirmed gain" if v.get("significant") else "confirmed, not significant"
            verdict = (
                f'<p class="verdict {cls}"><b>{_e(word)}</b> on rows the search never saw: {_e(_fmt.interval(v))}</p>'
            )
        else:
            reason = v.get("reason", "no reason recorded")
            verdict = f'<p class="verdict none"><b>not confirmed</b>: {_e(reason)}</p>'
    sel = scores.get("selection_verdict")
    if isinstance(sel, Mapping) and sel:
        verdict += (
            '<p class="muted">gain on the selection rows (they chose the winner, so it is optimistic): '
            f"{_e(_fmt.interval(sel))}</p>"
        )
    for key in ("why", "returned"):
        if scores.get(key):
            verdict += f'<p class="muted">{_e(key)}: {_e(scores[key])}</p>'
    winner = f" &middot; winner: {_e(_winner_name(scores, pair['winner']))}" if pair["winner"] is not None else ""
    return f'<h2>Result{winner}</h2><div class="row">{"".join(blocks)}</div>{verdict}'


def _winner_name(scores: Mapping[str, Any], winner: str) -> str:
    """The winner as a person reads it: a member's name, or a candidate's id and kind."""
    if isinstance(scores.get("members"), list) or winner == "start":
        return "the starting program" if winner == "start" else winner
    candidates = scores.get("candidates")
    for c in candidates if isinstance(candidates, list) else []:
        if isinstance(c, Mapping) and str(c.get("id")) == winner:
            kind = c.get("kind")
            return f"candidate {winner}" + (f" ({str(kind).replace('_', ' ')})" if kind else "")
    return f"candidate {winner}"


def _cost(data: ReportData) -> str:
    s = data.summary
    assert s is not None
    p = data.provenance
    u = s.usage
    rows = [("LM calls", _fmt.count(s.lm_calls) + " (cache hits included)")]
    if u is not None:
        rows += [
            ("sent / from the cache", f"{_fmt.count(u.calls)} / {_fmt.count(u.cache_hits)}"),
            ("prompt tokens", _fmt.count(u.prompt_tokens)),
            ("completion tokens", _fmt.count(u.completion_tokens)),
            ("tokens from the cache", _fmt.count(u.cached_tokens)),
        ]
    else:
        rows.append(("tokens", f"{_fmt.count(s.tokens)} prompt + completion (the artifact keeps no split)"))
    rows.append(
        (
            "wall time",
            _fmt.seconds(s.wall_s)
            if s.wall_s is not None
            else "not recorded (an artifact keeps no timings, so a rerun writes the same bytes)",
        )
    )
    est = p.get("estimate")
    if isinstance(est, Mapping):
        rows.append(
            (
                "planned (dry run)",
                f"up to {_fmt.count(est.get('lm_calls'))} LM calls, ~{_fmt.count(est.get('prompt_tokens'))} prompt tokens",
            )
        )
    if p.get("stopped_early"):
        rows.append(("stopped early", str(p.get("stop_reason", "at the budget"))))
    data_rows = [
        f"{w} {_fmt.count(p.get(f'{w}_size'))} rows" for w in ("trainset", "valset") if p.get(f"{w}_size") is not None
    ]
    if data_rows:
        rows.append(("data", ", ".join(data_rows)))
    rows.append(("seed", str(p.get("seed", "-"))))
    return "<h2>Cost</h2>" + _facts(rows)


def _plot(data: ReportData) -> str:
    assert data.summary is not None
    points, x_label = plot_points(data.summary.scores)
    if not points:
        return (
            f'<h2>Score against LM calls</h2><p class="muted">{_e(data.summary.optimizer)} recorded no scores '
            "over the compile, so there is nothing to plot.</p>"
        )
    kinds = {p.kind for p in points}
    names = {"chosen": "chosen", "start": "start", "candidate": "candidate", "dropped": "dropped by racing"}
    legend = (
        '<p class="legend">'
        + " ".join(f'<span class="dot {k}"></span>{names[k]}' for k in names if k in kinds)
        + (
            " &middot; the chosen one is the starting program"
            if any(p.kind == "chosen" and "starting" in p.label for p in points)
            else ""
        )
        + " &middot; the line: the best score so far</p>"
    )
    return f"<h2>Score against {_e(x_label.split(' (')[0])}</h2>{plot_svg(points, x_label=x_label)}{legend}"


def _candidates(data: ReportData) -> str:
    assert data.summary is not None
    headings, rows, chosen = candidates_table(data.summary.scores)
    if not rows:
        return ""
    return f"<h2>Candidates ({len(rows)}; the chosen one highlighted)</h2>" + _table(headings, rows, mark=chosen)


def _predictor(p: PredictorView) -> str:
    facts = [
        ("signature", p.signature),
        ("adapter", p.adapter + (f" ({p.adapter_reason})" if p.adapter_reason else "")),
        ("demos", str(p.demos)),
    ]
    if p.lm:
        facts.append(("LM", ", ".join(f"{k}={v}" for k, v in sorted(p.lm.items()))))
    if p.soft_prompt is not None:
        sp = p.soft_prompt
        facts.append(
            (
                "soft prompt",
                f"{sp.get('method')}: {sp.get('num_virtual_tokens')} virtual tokens ({sp.get('kind')}), "
                f"trained on {sp.get('base_model', {}).get('model', '?')}; sent as vectors with every call, "
                "not as text (sha256 " + str(sp.get("sha256", ""))[:12] + ")",
            )
        )
    messages = "".join(
        f'<div class="msg {_e(role)}"><div class="role">{_e(role)}</div><pre>{_e(content)}</pre></div>'
        for role, content in p.messages
    )
    return f"<h3>predictor <code>{_e(p.name)}</code></h3>{_facts(facts)}{messages}"


def _settings(p: Mapping[str, Any]) -> str:
    settings = p.get("settings")
    if not isinstance(settings, Mapping):
        return ""
    rows = [
        (str(k), ", ".join(v) if isinstance(v, Mapping) else _fmt.number(v))
        for k, v in settings.items()
        if v is not None
    ]
    return f"<details><summary>settings of {_e(p.get('optimizer', 'the optimizer'))}</summary>{_facts(rows)}</details>"


_CSS = """
body{font:15px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d2330;margin:0;background:#f3f4f7}
main{max-width:1080px;margin:0 auto;padding:24px 32px 48px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid #e3e6ec;padding-bottom:4px}
h3{font-size:16px;margin:22px 0 8px}.sub{color:#5b6272;margin:0 0 8px}.muted{color:#5b6272}
.row{display:flex;gap:20px;flex-wrap:wrap}.ba{border:1px solid #e3e6ec;border-radius:8px;padding:10px 18px;min-width:260px}
.ba .what{color:#5b6272;font-size:13px}.ba span{font-size:30px;font-weight:600;margin-right:8px}
.ba .before{color:#7b8190}.ba .arrow{color:#9aa0ad}.ba .after{color:#1f4e9c}.ba .delta{font-size:15px;color:#1d2330}
.verdict{padding:8px 12px;border-radius:6px;margin:12px 0 6px}.verdict.ok{background:#e7f5ea;border:1px solid #9fd3aa}
.verdict.warn{background:#fff6e0;border:1px solid #eccb7a}.verdict.none{background:#f1f2f5;border:1px solid #d6d9e0}
table{border-collapse:collapse}.facts th{text-align:left;color:#5b6272;font-weight:500;padding:3px 16px 3px 0;vertical-align:top;white-space:nowrap}
.facts td{padding:3px 0}.grid{font-size:13.5px;margin-top:4px}.grid th{background:#f1f2f5;text-align:left;padding:5px 10px}
.grid td{padding:4px 10px;border-top:1px solid #eceef2;font-variant-numeric:tabular-nums}.grid tr.chosen td{background:#fff1dc;font-weight:600}
.plot{max-width:100%;height:auto}.plot .tick{font-size:11px;fill:#5b6272}.plot .axis{font-size:12px;fill:#1d2330}
.legend{font-size:13px;color:#5b6272}.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin:0 4px 0 10px;vertical-align:-1px}
.dot.chosen{background:#e08a1e}.dot.start{background:#9a9a9a}.dot.candidate{background:#4a6fb5}.dot.dropped{border:1.5px solid #4a6fb5;width:8px;height:8px}
.msg{border:1px solid #e3e6ec;border-radius:6px;margin:8px 0;overflow:hidden}.msg .role{background:#f1f2f5;font-size:12px;padding:3px 10px;color:#5b6272;text-transform:uppercase;letter-spacing:.04em}
.msg pre{margin:0;padding:8px 10px;white-space:pre-wrap;word-break:break-word;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
.note{background:#f1f2f5;border:1px solid #d6d9e0;border-radius:6px;padding:10px 14px}
details{margin-top:24px}summary{cursor:pointer;color:#1f4e9c}code{font-family:ui-monospace,Menlo,Consolas,monospace}
footer{margin-top:32px;color:#8a90a0;font-size:12px}
"""


def page(data: ReportData) -> str:
    """The whole HTML page for ``data``."""
    p = data.provenance
    who = f"compiled by {p.get('optimizer')}" if data.summary is not None else "no compile recorded"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(data.title)}: oobleck compile report</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(data.title)}</h1>",
        f'<p class="sub">{_e(data.program)} &middot; {_e(who)} &middot; oobleck {_e(data.oobleck_version)}</p>',
    ]
    parts += [f'<p class="note">{_e(n)}</p>' for n in data.notes]
    if data.summary is None:
        parts.append(
            '<p class="note">This artifact carries no compile provenance: it was saved from a program as it was, '
            "not returned by an optimizer. There is no before and after, no candidates and no cost to show; "
            "below is the prompt it sends.</p>"
        )
    else:
        parts += [_result(data), _cost(data), _plot(data), _candidates(data)]
    parts.append(f"<h2>Final prompt ({len(data.predictors)} predictor{'s' if len(data.predictors) != 1 else ''})</h2>")
    parts.append(
        '<p class="muted">What the program sends: each predictor\'s messages, its inputs shown as '
        "<code>{placeholders}</code>.</p>"
    )
    parts += [_predictor(v) for v in data.predictors]
    parts.append(_settings(p))
    parts.append("<footer>Written by <code>oobleck report</code>. No script, no external file.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(x for x in parts if x) + "\n"
