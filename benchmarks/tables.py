"""Render the published benchmark figures from the committed results, so they cannot drift.

Every table and every inline figure of README.md and benchmarks/README.md that comes from a
benchmark sits between markers, and is rewritten here from ``benchmarks/results/*.json``:

    <!-- table:KEY -->            a block (a table and its provenance line)
    ...
    <!-- /table -->

    <!-- fig:KEY -->77.3<!-- /fig -->    an inline figure in prose

``KEY`` is ``renderer``, ``renderer@result`` (the same renderer on another JSON, e.g. an earlier
run kept under ``results/history/``), or ``v:result:dotted.path[|format]`` for one value read
straight from a JSON (``v:overhead:per_call.oobleck.median_us.median``). Adding a benchmark is
one function decorated with ``@renderer("name")``: it gets the loaded JSON and returns text.

    python benchmarks/tables.py            rewrite the marked regions in place
    python benchmarks/tables.py --check    exit 1 with a diff when a region disagrees with its JSON

Results written before issue 18 carry no ``run`` record (command line, dirty tree, load at
start, DSPy in the same process run); the provenance lines say "not recorded" for what is
missing rather than guess. Those results also counted oobleck's compile calls as
``usage.calls + usage.retries``, though ``calls`` already counts every attempt; the tables
that show such counts say so.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DOCS = (ROOT / "README.md", BENCH / "README.md")

MARK = re.compile(r"<!-- (table|fig):(?P<key>[^ ]+) -->(?P<body>.*?)<!-- /\1 -->", re.S)

Renderer = Callable[[dict[str, Any]], str]
RENDERERS: dict[str, tuple[str, Renderer]] = {}

OLD_CALLS = (
    "oobleck's call counts in this JSON were written as `usage.calls + usage.retries`, which "
    "counts a retry twice (`calls` already includes it); the script now records `usage.calls`."
)


def renderer(name: str, *, source: str | None = None) -> Callable[[Renderer], Renderer]:
    """Register ``fn`` as the renderer ``name``, reading ``results/<source or name>.json``."""

    def register(fn: Renderer) -> Renderer:
        RENDERERS[name] = (source or name, fn)
        return fn

    return register


@cache
def load(result: str) -> dict[str, Any]:
    """The JSON of ``results/<result>.json`` (``result`` may name a file under history/)."""
    path = RESULTS / f"{result}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["_file"] = f"results/{result}.json"
    return data


def lookup(data: Any, path: str) -> Any:
    """``data`` followed along a dotted path (list indices as numbers)."""
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


# ---------------------------------------------------------------------------- formatting


def num(x: float | None, digits: int = 1) -> str:
    """A number with fixed decimals; a dash for None."""
    return "–" if x is None else f"{x:.{digits}f}"


def signed(x: float, digits: int = 1) -> str:
    return f"{x:+.{digits}f}"


def thousands(x: int | float | None) -> str:
    return "–" if x is None else f"{round(x):,}"


def ci(low: float, high: float, digits: int = 1) -> str:
    return f"{low + 0.0:.{digits}f}-{high:.{digits}f}"  # + 0.0 turns a stored -0.0 into 0.0


def table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    """A markdown table; ``align`` holds 'l' or 'r' per column."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def load_text(values: list[float] | None) -> str:
    """A load average triple as 1/5/15-minute values."""
    return "not recorded" if not values else "/".join(f"{v:g}" for v in values) + " (1/5/15 min)"


def provenance(d: dict[str, Any], *, dspy: bool = False, note: str = "") -> str:
    """One line that says which run a table comes from, and what that run did not record."""
    run = d.get("run")
    machine = d.get("machine", {})
    if run:
        start, end = run["git_at_start"], run["git_at_write"]
        commit = f"`{(start['commit'] or '?')[:7]}`" + (" (dirty tree)" if start.get("dirty") else "")
        if end.get("commit") != start.get("commit"):
            commit += f", `{(end['commit'] or '?')[:7]}` when written"
        command = f"`{run['command']}`"
        loads = f"load average at start {load_text(run['loadavg_at_start'])}, at end {load_text(run['loadavg_at_end'])}"
        same = "yes" if run["dspy_same_run"] else "no"
    else:
        commit = f"`{machine.get('oobleck_commit')}` (taken when the JSON was written; dirty tree not recorded)"
        command = f"`{d['command']}`" if d.get("command") else "not recorded"
        loads = (
            f"load average at start {load_text(d.get('loadavg_at_start'))}, "
            f"at end {load_text(machine.get('loadavg_at_end'))}"
        )
        same = "not recorded"
    parts = [
        f"Source: `{d['_file']}`, {machine.get('date', 'date not recorded')}",
        f"commit {commit}",
        f"command {command}",
        loads,
    ]
    if dspy:
        parts.append(f"DSPy in the same process run: {same}")
    line = "; ".join(parts) + "."
    return line + (" " + note if note else "")


def block(*pieces: str) -> str:
    return "\n" + "\n\n".join(p for p in pieces if p) + "\n"


# ---------------------------------------------------------------------------- values


def _value(key: str) -> str:
    """``v:result:path[|format]``: one value read from a JSON."""
    _, result, rest = key.split(":", 2)
    path, _, fmt = rest.partition("|")
    value = lookup(load(result), path)
    if fmt == "load":
        return load_text(value)
    return format(value, fmt) if fmt else str(value)


# ---------------------------------------------------------------------------- overhead


@renderer("overhead")
def overhead_table(d: dict[str, Any]) -> str:
    pc, su = d["per_call"], d["startup"]
    o, s, r = su["oobleck"], su["dspy"], su["ratio_oobleck_over_dspy"]
    goals = d["goals"]

    def rng(x: dict[str, float]) -> str:
        return f"{x['median']:.1f} ({x['min']:.1f}–{x['max']:.1f})"

    def best_med(x: dict[str, Any], key: str, spread: str) -> str:
        return f"{x[key]:.3f} ({x[spread]['median']:.3f})"

    def best(x: dict[str, Any], key: str) -> str:
        return f"{x[key]:.3f}"

    def met(g: dict[str, Any]) -> str:
        return "yes" if g["met"] else "no"

    ratio = pc["ratio_oobleck_over_dspy"]
    pr = ratio["paired_per_round"]
    rows = [
        [
            "per call, median µs (median of rounds; range)",
            rng(pc["oobleck"]["median_us"]),
            rng(pc["dspy"]["median_us"]),
            f"{ratio['of_median_of_round_medians']:.3f} (paired per round {pr['min']:.3f}–{pr['max']:.3f})",
            goals["per_call_ratio"]["goal"],
            met(goals["per_call_ratio"]),
        ],
        [
            "per call, mean µs (median of rounds)",
            f"{pc['oobleck']['mean_us']['median']:.1f}",
            f"{pc['dspy']['mean_us']['median']:.1f}",
            f"{ratio['of_median_of_round_means']:.3f}",
            "",
            "",
        ],
        [
            "`import` over bare interpreter, s (best)",
            best(o, "import_over_bare_s"),
            best(s, "import_over_bare_s"),
            f"{r['import_over_bare']:.2f}",
            f"oobleck {goals['import_over_bare_s']['goal']} s",
            met(goals["import_over_bare_s"]),
        ],
        [
            "`import` in-process, s (best; median)",
            best_med(o, "import_inprocess_best_s", "import_inprocess_s"),
            best_med(s, "import_inprocess_best_s", "import_inprocess_s"),
            f"{r['import_inprocess']:.2f}",
            "",
            "",
        ],
        [
            "cold start over bare interpreter, s (best)",
            f"{o['cold_start_over_bare_s']:.3f}",
            f"{s['cold_start_over_bare_s']:.3f}",
            f"{r['cold_start_over_bare']:.2f}",
            goals["cold_start_ratio"]["goal"],
            met(goals["cold_start_ratio"]),
        ],
        [
            "bare interpreter, s (best)",
            f"{o['bare_interpreter_s']['min']:.3f}",
            f"{s['bare_interpreter_s']['min']:.3f}",
            "",
            "",
            "",
        ],
        ["modules loaded by the import", str(o["modules_imported"]), str(s["modules_imported"]), "", "", ""],
    ]
    head = ["measure", "oobleck", f"DSPy {pc['dspy']['version']}", "oobleck / DSPy", "goal", "met"]
    return block(table(head, ["l", "r", "r", "r", "l", "l"], rows), provenance(d, dspy=True))


@renderer("overhead.headline", source="overhead")
def overhead_headline(d: dict[str, Any]) -> str:
    o = d["startup"]["oobleck"]
    pc = d["per_call"]
    load = d["machine"]["loadavg_at_end"]
    loaded = load[0] > 1.0
    state, inflated = ("loaded", ", which inflates both") if loaded else ("quiet", "")
    missed = "" if all(g.get("met") for g in d.get("goals", {}).values()) else " and the goals these miss"
    return (
        f"`import oobleck` pulls in no LM SDK ({o['import_over_bare_s']:.2f} s over a bare interpreter, best of "
        f"{d['startup']['repeats']}); the framework adds {pc['oobleck']['median_us']['median']:.1f} µs per call "
        f"(median of {pc['rounds']} rounds), {pc['ratio_oobleck_over_dspy']['of_median_of_round_medians']:.2f} of "
        f"DSPy's. Measured at commit `{d['machine']['oobleck_commit']}` on a {state} {d['machine']['cpus']}-core "
        f"machine (load average {load[0]:g} at the end){inflated}; `benchmarks/README.md` has the table beside "
        f"DSPy's{missed}"
    )


# ---------------------------------------------------------------------------- make demo


@renderer("demo")
def demo(d: dict[str, Any]) -> str:
    """The README's account of `make demo`, from the JSON its --result flag writes."""
    run = d["run"]
    gain = d["gain"]
    verdict = d.get("verdict") or {}
    confirmed = (
        f"the compile's own verdict on its confirming rows: {signed(verdict['gain'])} points"
        if verdict.get("confirmed")
        else f"the compile's own verdict: not confirmed ({verdict.get('reason', 'not recorded')})"
    )
    load = run.get("loadavg_at_end")
    return (
        f"On this {run.get('cpus', '?')}-core machine, from a cold cache ({run['date']}, commit "
        f"`{(run['commit'] or '?')[:7]}`{', dirty tree' if run.get('dirty') else ''}; load "
        f"{'not recorded' if not load else f'{load[0]:g} at the end'}), on the defaults (mode "
        f"`{d['mode']}`, adapter `{d['adapter']}`: the labels ranked by likelihood and calibrated), it took "
        f"{d['wall_s']:.0f} s and {d['compile_calls']} compile LM calls, and printed {d['zero_shot']:.1f}% "
        f"zero-shot and {d['compiled']:.1f}% compiled accuracy ({d['demos']} demos) on the {d['dev_rows']} "
        f"SST-2 dev rows; paired on those rows the compile changed accuracy by {signed(gain['points'])} points "
        f"(95% interval {signed(gain['low'])} to {signed(gain['high'])}, "
        f"{'significant' if gain['significant'] else 'not significant'}); {confirmed}"
    )


# ---------------------------------------------------------------------------- budget_caps


@renderer("budget_caps")
def budget_caps(d: dict[str, Any]) -> str:
    rows = []
    for name, c in d["cases"].items():
        limit = d["limits"][name]
        sent = c.get("sent")
        rows.append(
            [
                name,
                str(limit),
                str(c["max_sent"]),
                ", ".join(str(x) for x in sent) if sent else "–",
                "yes" if c["max_sent"] <= limit else "**no**",
            ]
        )
    header = ["case", "limit (calls)", "most calls a backend saw", f"calls per seed ({d['seeds']} seeds)", "cap held"]
    verdict = f"Every case held its cap: **{'yes' if d['cap_held'] else 'no'}**."
    return block(table(header, ["l", "r", "r", "l", "l"], rows), verdict, provenance(d))


# ---------------------------------------------------------------------------- label_scoring

LS_MODES = {
    "generate": "generate (JSON)",
    "score": "score",
    "contextual": "score + contextual",
    "batch": "score + batch",
}


def _ls_table(d: dict[str, Any]) -> str:
    rows = []
    for task, t in d["tasks"].items():
        for name, c in t["cells"].items():
            mode, stage = name.split("/")
            top = c["most_frequent"]
            rows.append(
                [
                    TASK_NAMES.get(task, task),
                    str(t["dev_rows"]),
                    LS_MODES.get(mode, mode),
                    stage.replace("_", " "),
                    f"{num(c['accuracy'])} [{ci(*c['accuracy_ci'])}]",
                    f"{num(c['macro_f1'])} [{ci(*c['macro_f1_ci'])}]",
                    f"{num(top['share'])} ({num(top['true_share'])})",
                    num(c["seconds_per_row"], 2),
                    num(c["dev_calls"] / t["dev_rows"], 1),
                    thousands(c.get("compile_calls")),
                ]
            )
        dspy = t.get("dspy_mipro_json")
        if dspy and "dev_score" in dspy:
            rows.append(
                [
                    TASK_NAMES.get(task, task),
                    str(t["dev_rows"]),
                    "DSPy MIPROv2 (JSON, constrained)",
                    "compiled",
                    f"{num(dspy['dev_score'])}",
                    "not recorded",
                    "not recorded",
                    "–",
                    "–",
                    thousands(dspy.get("compile", {}).get("calls") if isinstance(dspy.get("compile"), dict) else None),
                ]
            )
    header = [
        "task",
        "dev rows",
        "program",
        "stage",
        "accuracy [95%]",
        "macro-F1 [95%]",
        "top answer % (its true %)",
        "s/row",
        "calls/row",
        "compile calls",
    ]
    comparisons = []
    for task, t in d["tasks"].items():
        for key, cmp in t.get("comparisons", {}).items():
            comparisons.append(
                [
                    TASK_NAMES.get(task, task),
                    key.replace("_", " "),
                    signed(cmp["gain"]),
                    f"{signed(cmp['low'])} to {signed(cmp['high'])}",
                    "yes" if cmp["significant"] else "no",
                ]
            )
    cmp_table = (
        table(
            ["task", "paired on the same dev rows", "points", "95% interval", "significant"],
            ["l", "l", "r", "r", "l"],
            comparisons,
        )
        if comparisons
        else ""
    )
    return block(
        table(header, ["l", "r", "l", "l", "r", "r", "r", "r", "r", "r"], rows),
        cmp_table,
        provenance(
            d,
            dspy=bool(d["settings"].get("dspy")),
            note=(
                "A partial run: the script writes its JSON after every cell, and the cells of the "
                f"command's modes ({', '.join(d['settings']['modes'])}) missing here had not finished when it was stopped."
                if d.get("complete") is False
                else ""
            ),
        ),
    )


@renderer("label_scoring.sst2_trec", source="label_scoring_sst2_trec")
def label_scoring_sst2_trec(d: dict[str, Any]) -> str:
    return _ls_table(d)


@renderer("label_scoring.tweet", source="label_scoring_tweet")
def label_scoring_tweet(d: dict[str, Any]) -> str:
    return _ls_table(d)


@renderer("label_scoring.banking77", source="label_scoring_banking77")
def label_scoring_banking77(d: dict[str, Any]) -> str:
    return _ls_table(d)


@renderer("label_scoring.joint", source="label_scoring_joint")
def label_scoring_joint(d: dict[str, Any]) -> str:
    return _ls_table(d)


def _ls_sources() -> list[str]:
    """Every label_scoring result (not the cost one), oldest name first."""
    names = sorted(p.stem for p in RESULTS.glob("label_scoring_*.json"))
    return [n for n in names if n not in ("label_scoring_cost", "label_scoring_slots")]


def _label_goals() -> Any:
    """benchmarks/label_goals.py (imported from this folder, as the script imports it)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import label_goals

    return label_goals


def _ls_pooled() -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Per task and dev-row count: the cells of every label_scoring result, and DSPy's rows; the files used."""
    pooled: dict[tuple[str, int], dict[str, Any]] = {}
    used: list[str] = []
    for name in _ls_sources():
        d = load(name)
        for task, t in d["tasks"].items():
            p = pooled.setdefault((task, t["dev_rows"]), {"dev_rows": t["dev_rows"], "cells": {}, "dspy": None})
            p["cells"].update(t["cells"])
            if t.get("dspy_mipro_json", {}).get("dev_scores"):
                p["dspy"] = t["dspy_mipro_json"]["dev_scores"]
            label = f"`{d['_file']}`" + ("" if d.get("complete", True) else " (partial run)")
            if label not in used:
                used.append(label)
    order = list(TASK_NAMES)
    keys = sorted(pooled, key=lambda k: (order.index(k[0]) if k[0] in order else 99, -k[1]))
    return [(k[0], pooled[k]) for k in keys], used


def _cell_name(name: str) -> str:
    mode, stage = name.split("/")
    return f"{LS_MODES.get(mode, mode)}, {stage.replace('_', ' ')}"


def _diff(x: dict[str, Any]) -> str:
    return f"{signed(x['gain'])} [{signed(x['low'])} to {signed(x['high'])}]"


@renderer("label_scoring.goals", source="label_scoring_sst2_trec")
def label_scoring_goals(_: dict[str, Any]) -> str:
    lg = _label_goals()
    pooled, used = _ls_pooled()
    mark = {True: "met", False: "**missed**"}
    vs_gen, vs_dspy, collapse = [], [], []
    for task, p in pooled:
        g = lg.goals(p["cells"], p["dspy"])
        name = TASK_NAMES.get(task, task)
        for stage, e in g["calibrated_vs_generate"].items():
            if not e["computable"]:
                vs_gen.append(
                    [
                        name,
                        str(p["dev_rows"]),
                        stage.replace("_", " "),
                        "–",
                        "–",
                        "–",
                        "–",
                        f"not computable: {e['why']}",
                    ]
                )
                continue
            ctx = e.get("contextual_difference")
            vs_gen.append(
                [
                    name,
                    str(p["dev_rows"]),
                    stage.replace("_", " "),
                    f"{_cell_name(e['best_generate'])}: {num(e['best_generate_accuracy'])}",
                    f"{_cell_name(e['best_calibrated'])}: {num(e['best_calibrated_accuracy'])}",
                    _diff(e["difference"]),
                    _diff(ctx) if ctx else "–",
                    mark[e["met"]],
                ]
            )
        dv = g["compiled_vs_dspy"]
        if dv["computable"]:
            vs_dspy.append(
                [
                    name,
                    str(p["dev_rows"]),
                    f"{_cell_name(dv['best_calibrated'])}: {num(dv['best_calibrated_accuracy'])}",
                    num(dv["dspy_accuracy"]),
                    _diff(dv["difference"]),
                    "yes" if dv["significant"] else "no",
                    mark[dv["met"]],
                ]
            )
        else:
            vs_dspy.append([name, str(p["dev_rows"]), "–", "–", "–", "–", f"not computable: {dv['why']}"])
        c = g["collapse"]
        over = "; ".join(
            f"{n.replace('_', ' ')}: {o['label']} {num(o['share'])} ({num(o['true_share'])}), "
            + (f"{o['ratio']:.2f}×" if o["ratio"] is not None else "never gold")
            for n, o in sorted(c["over"].items(), key=lambda kv: -(kv[1]["ratio"] or 1e9))
        )
        collapse.append([name, str(p["dev_rows"]), f"{len(c['over'])} of {c['cells']}", over or "none", mark[c["met"]]])
    note = (
        "Cells are pooled per task from "
        + ", ".join(used)
        + ": every run on a task's first N dev rows evaluates them in the same order, so cells of different "
        "runs with the same N are paired row by row. The JointSearch cells come from runs without DSPy; DSPy MIPROv2's rows are those of the "
        "RandomSearch runs (same rows, another process run). The best calibrated cell is picked on the dev "
        "rows (between contextual and batch), which flatters it; the contextual column (the default) is not "
        "picked. `compiled` pools RandomSearch and JointSearch. Goals computed by `benchmarks/label_goals.py`."
    )
    return block(
        table(
            [
                "task",
                "dev rows",
                "stage",
                "best generating: accuracy",
                "best calibrated scored: accuracy",
                "difference [95%]",
                "contextual (default) − best generating [95%]",
                "significantly above (goal)",
            ],
            ["l", "r", "l", "l", "l", "r", "r", "l"],
            vs_gen,
        ),
        table(
            [
                "task",
                "dev rows",
                "best compiled calibrated: accuracy",
                "DSPy MIPROv2 (JSON, constrained)",
                "difference [95%]",
                "significant",
                "above DSPy (goal)",
            ],
            ["l", "r", "l", "r", "r", "l", "l"],
            vs_dspy,
        ),
        table(
            [
                "task",
                "dev rows",
                "cells over 1.5×",
                "those cells: top answer % (its true %), ratio; worst first",
                "no collapse (goal)",
            ],
            ["l", "r", "r", "l", "l"],
            collapse,
        ),
        note,
    )


@renderer("label_scoring_cost")
def label_scoring_cost(d: dict[str, Any]) -> str:
    rows = []
    for task, t in d["tasks"].items():
        m = t["methods"]
        rows.append(
            [
                TASK_NAMES.get(task, task),
                str(t["k"]),
                str(m["generate"]["rows"]),
                num(m["generate"]["seconds_per_row"]["mean"], 2),
                num(m["score"]["seconds_per_row"]["mean"], 2),
                f"{t['score_over_generate']:.2f}×",
                "yes" if t["goal_score_at_most_2x_generate"] else "**no**",
            ]
        )
    header = [
        "task",
        "labels K",
        "rows",
        "constrained generation s/row",
        "scoring K labels s/row",
        "ratio",
        "≤ 2× (goal)",
    ]
    return block(table(header, ["l", "r", "r", "r", "r", "r", "l"], rows), provenance(d))


@renderer("label_scoring_slots")
def label_scoring_slots(d: dict[str, Any]) -> str:
    rows = [
        [
            f"{n} parallel scorer(s), 8 slots, 1 thread",
            num(v["seconds_per_row"], 2),
            thousands(round(v["tokens_evaluated_per_row"])),
        ]
        for n, v in d["slots"].items()
    ]
    rows += [
        [
            f"1 scorer, {n} llama.cpp thread(s)",
            num(v["seconds_per_row"], 2),
            thousands(round(v["tokens_evaluated_per_row"])),
        ]
        for n, v in d["threads"].items()
    ]
    per = d["per_token"]
    costs = table(
        ["token evaluated as", "ms per token"],
        ["l", "r"],
        [
            ["prompt (one batch)", num(per["ms_per_prompt_token"], 1)],
            ["forced label token (one decoding step)", num(per["ms_per_forced_token"], 1)],
        ],
    )
    return block(
        costs,
        table(["77 labels scored as", "s/row", "tokens evaluated/row"], ["l", "r", "r"], rows),
        provenance(d),
    )


# ---------------------------------------------------------------------------- default_adapter

TASK_NAMES = {
    "sst2": "SST-2",
    "trec": "TREC",
    "irony": "TweetEval irony",
    "tweet_sentiment": "TweetEval sentiment",
    "banking77": "Banking77",
}


@renderer("default_adapter")
def default_adapter_table(d: dict[str, Any]) -> str:
    labels = {
        "chat": "`chat` (the old default)",
        "json": "`json` (`JSONAdapter`)",
        "one_line": "**`one_line` (the default)**",
        "keys_hint": "`keys_hint` (one_line + an answer-keys line)",
    }
    rows = []
    for task, res in d["results"].items():
        for name, a in res["adapters"].items():
            answers = ", ".join(
                f"{n} {k if k != '<parse failure>' else 'unreadable'}"
                for k, n in sorted(a["answers"].items(), key=lambda kv: -kv[1])
            )
            fails = f"{a['parse_failures']} / {res['rows']}" if a["parse_failures"] else "0"
            rows.append(
                [
                    TASK_NAMES.get(task, task),
                    labels.get(name, f"`{name}`"),
                    f"{a['accuracy']:.1f} ({ci(*a['accuracy_95ci'])})",
                    fails,
                    answers,
                    str(a["lm_calls"]),
                ]
            )
    t = table(
        ["task", "adapter", "accuracy % (95% CI)", "parse failures", "answers", "LM calls"],
        ["l", "l", "r", "r", "l", "r"],
        rows,
    )
    paired = []
    for task, res in d["results"].items():
        diffs = "; ".join(
            f"`{k}` {signed(v['mean'])} ({num(v['low'])} to {num(v['high'])})" for k, v in res["one_line_minus"].items()
        )
        paired.append(f"{TASK_NAMES.get(task, task)}: {diffs}")
    text = "Paired on the same rows, `one_line` minus each other adapter: " + ". ".join(paired) + "."
    return block(t, text, provenance(d))


@renderer("default_adapter.failures", source="default_adapter")
def default_adapter_failures(d: dict[str, Any]) -> str:
    res = d["results"].values()
    n = sum(r["rows"] for r in res)
    new = sum(r["adapters"]["one_line"]["parse_failures"] for r in res)
    old = sum(r["adapters"]["chat"]["parse_failures"] for r in res)
    return f"{new} of {n}, vs {old} of {n} for the old chat default"


# ---------------------------------------------------------------------------- parse_robustness


@renderer("parse_robustness")
def parse_robustness_table(d: dict[str, Any]) -> str:
    rows = []
    for r in d["table"]:
        fails = f"{r['parse_failures']} ({100 * r['failure_rate']:g}%)" if r["parse_failures"] else "0"
        adapter = r["adapter"]
        if r["framework"] == "oobleck" and adapter == "json":
            fails, adapter = f"**{fails}**", f"**{adapter}**"
        fb = "–" if r["fallbacks"] is None or r["adapter"] != "chat" else f"{r['fallbacks']} ({r['fallback_rescued']})"
        rows.append(
            [
                TASK_NAMES.get(r["task"], r["task"]),
                str(r["demos"]),
                "oobleck" if r["framework"] == "oobleck" else "DSPy",
                adapter,
                fails,
                f"{r['accuracy']:g}",
                str(r["lm_calls"]),
                fb,
            ]
        )
    t = table(
        ["task", "demos", "framework", "adapter", "parse failures", "accuracy", "LM calls", "fallbacks (rescued)"],
        ["l", "r", "l", "l", "r", "r", "r", "l"],
        rows,
    )
    return block(t, provenance(d, dspy=True))


@renderer("parse_robustness.json_failures", source="parse_robustness")
def parse_robustness_json_failures(d: dict[str, Any]) -> str:
    def count(framework: str) -> tuple[int, int]:
        rows = [r for r in d["table"] if r["framework"] == framework and r["adapter"] == "json"]
        return sum(r["parse_failures"] for r in rows), sum(r["n"] for r in rows)

    (of, on), (df, dn) = count("oobleck"), count("dspy")
    return f"**Met: {of} of {on}.** DSPy's JSONAdapter fails on {df} of {dn}"


# ---------------------------------------------------------------------------- compile_fewshot

FEWSHOT_METHODS = {
    "zero_shot": "zero-shot",
    "labeled": "LabeledFewShot",
    "bootstrap": "BootstrapFewShot",
    "random_search": "RandomSearch",
}


def _fewshot_rows(
    d: dict[str, Any], *, systems: tuple[str, ...] | None = None, with_dev: bool = True
) -> list[list[str]]:
    rows = []
    for r in d["table"]:
        if systems and r["system"] not in systems:
            continue
        system = "oobleck" if r["system"] == "oobleck" else r["system"].replace("dspy", "DSPy")
        method = (
            FEWSHOT_METHODS.get(r["method"], r["method"])
            if r["system"] == "oobleck"
            else "BootstrapFewShotWithRandomSearch"
        )
        row = [
            TASK_NAMES.get(r["task"], r["task"]),
            system,
            method,
            f"{r['dev_score']:g}",
            thousands(r["compile_calls"]),
            thousands(r["compile_tokens"]),
            f"{r['compile_wall_s']:.0f}",
        ]
        if with_dev:
            row += [thousands(r["eval_calls"]), thousands(r["eval_tokens"]), f"{r['eval_wall_s']:.0f}"]
        rows.append(row)
    return rows


FEWSHOT_HEAD = ["task", "system", "method", "dev score %", "compile calls", "compile tokens", "compile s"]


@renderer("compile_fewshot")
def compile_fewshot_table(d: dict[str, Any]) -> str:
    t = table(FEWSHOT_HEAD + ["dev calls", "dev tokens", "dev s"], ["l", "l", "l"] + ["r"] * 7, _fewshot_rows(d))
    return block(
        t,
        provenance(
            d,
            dspy=True,
            note=OLD_CALLS + " Retries were 0 in this run, so the counts are unaffected."
            if d.get("run") is None
            else "",
        ),
    )


@renderer("compile_fewshot.after_fix", source="compile_fewshot_oobleck_after_fix")
def compile_fewshot_after_fix(d: dict[str, Any]) -> str:
    dspy = load("history/compile_fewshot-8ee03c8")
    rows = _fewshot_rows(d, with_dev=False) + _fewshot_rows(
        dspy, systems=("dspy (chat)", "dspy (json)"), with_dev=False
    )
    rows.sort(key=lambda r: (r[0] != "SST-2", r[1] != "oobleck"))
    t = table(FEWSHOT_HEAD, ["l", "l", "l"] + ["r"] * 4, rows)
    return block(
        t,
        "oobleck rows: " + provenance(d),
        "DSPy rows, **from a separate, earlier run**: " + provenance(dspy, dspy=True),
    )


@renderer("compile_fewshot.goal", source="compile_fewshot")
def compile_fewshot_goal(d: dict[str, Any]) -> str:
    out = []
    for task, g in d["goal"]["per_task"].items():
        verdict = "met" if g["met"] else "not met"
        out.append(
            f"{TASK_NAMES.get(task, task)}: {verdict}, RandomSearch {g['oobleck_dev_score']:g} at "
            f"{g['oobleck_compile_calls']} compile calls against DSPy ({g['dspy_best_adapter']}) "
            f"{g['dspy_best_dev_score']:g} at {g['dspy_compile_calls']}"
        )
    return "; ".join(out)


# ---------------------------------------------------------------------------- serve


@renderer("serve")
def serve_table(d: dict[str, Any]) -> str:
    """The ASGI server against the stdlib one, per program and number of clients (medians of repeats)."""
    import statistics

    names = {"stdlib": "stdlib (cff1a88)", "asgi": "ASGI (uvicorn)", "floor": "bare Starlette on uvicorn"}
    rows = []
    for program, by_server in d["programs"].items():
        levels = sorted({r["clients"] for r in by_server["asgi"]})
        for clients in levels:
            for server in [s for s in ("stdlib", "asgi", "floor") if s in by_server]:
                runs = [r for r in by_server[server] if r["clients"] == clients]

                def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                    return statistics.median(r[key] for r in runs)

                rows.append(
                    [
                        "fake LM, {:g} ms".format(1000 * d["delay_s"]) if program == "fake" else "embedded SmolLM2",
                        str(clients),
                        names[server],
                        str(len(runs)),
                        num(med("requests_per_s")),
                        num(med("latency_ms_p50")),
                        num(med("latency_ms_p99")),
                        num(med("server_cpu_ms_per_request"), 2),
                        str(sum(r["failures"] for r in runs)),
                    ]
                )
    s = d["summary"]
    over, cpu = s["latency_over_delay_ms_at_1_client"], s["server_cpu_ms_per_request_at_1_client"]
    goals = (
        f"Goals: no failure at the most clients: {'met' if s['no_failures_at_top'] else 'missed'}; overhead per "
        f"request no worse than the stdlib server's: {'met' if s['overhead_no_worse'] else 'missed'} (at 1 client, "
        f"latency over the fake LM's delay {over['asgi']:.2f} ms against {over['stdlib']:.2f} ms; server CPU per "
        f"request {cpu['asgi']:.2f} ms against {cpu['stdlib']:.2f} ms"
        + (f"; a bare Starlette app on uvicorn spends {cpu['floor']:.2f} ms)." if "floor" in cpu else ").")
    )
    return block(
        table(
            [
                "program",
                "clients",
                "server",
                "runs",
                "requests/s",
                "p50 ms",
                "p99 ms",
                "server CPU ms/request",
                "failures",
            ],
            ["l", "r", "l", "r", "r", "r", "r", "r", "r"],
            rows,
        ),
        goals,
        provenance(d),
    )


# ---------------------------------------------------------------------------- reliability


@renderer("reliability")
def reliability_table(d: dict[str, Any]) -> str:
    a, f, s = d["threads_cache_on"], d["threads_cache_on_with_faults"], d["serve_200_clients"]
    inj = f["injected"]

    def ceiling(parts: list[dict[str, Any]]) -> str:
        ratios = " / ".join(f"{p['evaluate_over_ceiling']:.2f}" for p in parts)
        ev = " / ".join(f"{p['evaluate_rows_per_s']:.2f}" for p in parts)
        srv = " / ".join(f"{p['server_ceiling_rows_per_s']:.2f}" for p in parts)
        return f"{ratios} of the ceiling ({ev} rows/s against {srv})"

    own = d.get("evaluate_vs_server_ceiling") or []  # absent when the run left out the ceiling part
    threads = " / ".join(str(p["threads"]) for p in own)
    ceiling_name = d.get("ceiling_result", "reliability_ceiling")  # a history run names its own
    c8 = load(ceiling_name)
    rows = [
        [
            f"{a['threads']} threads x {a['calls_per_thread']} calls, cache on",
            f"{a['answered']}/{a['requests']} answered, {a['errors']} errors; {a['lm_calls']} LM calls + "
            f"{a['cache_hits']} cache hits = {a['lm_calls'] + a['cache_hits']}; {a['wall_s']:.0f} s "
            f"({a['requests_per_s']:g} requests/s)",
        ],
        [
            "same, with faults injected",
            f"{f['answered']}/{f['requests']} answered, {f['errors']} errors; {sum(inj.values())} faults injected "
            f"({inj.get('429', 0)} x 429, {inj.get('500', 0)} x 500, {inj.get('drop', 0)} drop), {f['retries']} retries "
            f"counted (equal: {'yes' if f['retries_equal_injected'] else 'no'}); {f['lm_calls'] - f['retries']} first "
            f"attempts + {f['cache_hits']} hits = {f['lm_calls'] - f['retries'] + f['cache_hits']}; {f['wall_s']:.0f} s",
        ],
        [
            f"{s['clients']} concurrent clients vs `oobleck serve`",
            f"{s['statuses'].get('200', 0)}/{s['clients']} HTTP 200; all answered in {s['wall_s']:.2f} s; latency p50 "
            f"{s['latency_ms_p50']:.0f} ms, p99 {s['latency_ms_p99']:.0f} ms",
        ],
    ]
    if own:
        rows.append([f"evaluate vs the server's own ceiling, {threads} threads, {own[0]['rows']} rows", ceiling(own)])
    extra = not own or c8["evaluate_vs_server_ceiling"][0]["rows"] > own[0]["rows"]
    if extra:  # a separate ceiling run (with more rows than this one, or this one had none)
        rows.append(
            [
                ("same" if own else "evaluate vs the server's own ceiling, 1 / 4 / 8 threads")
                + f", {c8['evaluate_vs_server_ceiling'][0]['rows']} rows (`results/{ceiling_name}.json`)",
                ceiling(c8["evaluate_vs_server_ceiling"]),
            ]
        )
    t = table(["part", "result"], ["l", "l"], rows)
    return block(t, provenance(d), provenance(c8) if extra else "")


# ---------------------------------------------------------------------------- hotpotqa


@renderer("hotpotqa.retrievers", source="hotpotqa_retrieval")
def hotpotqa_retrievers(d: dict[str, Any]) -> str:
    names = {
        "bm25 (bm25s)": "BM25 (`BM25Index`, bm25s)",
        "vector MiniLM": "exact vectors, MiniLM (`VectorIndex`)",
        "vector hashing": "exact vectors, hashing",
        "hybrid RRF": "hybrid RRF (BM25 + MiniLM)",
        "qdrant local MiniLM": "Qdrant local mode, MiniLM vectors (build = upload)",
    }
    rows = []
    for r in d["retrievers"]["rows"]:
        build = "(none)" if r.get("note", "").startswith("fuses") else f"{r['build_s']:.1f} s"
        rows.append(
            [names.get(r["retriever"], r["retriever"]), build, f"{r['qps_batched']:g}", f"{r['qps_one_at_a_time']:g}"]
            + [f"{r['recall'][k]:.1f}%" for k in ("both@2", "both@4", "both@10")]
        )
    t = table(
        ["retriever", "build", "queries/s batched", "queries/s one at a time", "both@2", "both@4", "both@10"],
        ["l"] + ["r"] * 6,
        rows,
    )
    return block(t, provenance(d) + f" {d['retrievers']['questions']} dev questions.")


HOTPOT_PROGRAMS = {"rag": "RAG", "multihop": "MultiHop"}
HOTPOT_STAGES = {
    "zero_shot": "zero-shot",
    "compiled": "compiled",
    "compiled_search": "compiled + RandomSearch",
    "compiled_instructions": "compiled + instructions",
}


@renderer("hotpotqa")
def hotpotqa_table(d: dict[str, Any]) -> str:
    rows = []
    for r in d["table"]:
        prog = (
            HOTPOT_PROGRAMS.get(r["program"], r["program"])
            if r["framework"] == "oobleck"
            else r["program"].replace("multihop", "multi-hop").replace("rag", "RAG")
        )
        rows.append(
            [
                "oobleck" if r["framework"] == "oobleck" else "DSPy",
                prog,
                HOTPOT_STAGES.get(r["stage"], r["stage"]),
                f"{r['em']:.1f} ({ci(*r['em_95ci'])})",
                f"{r['f1']:.1f}",
                f"{r['recall_both']:.1f}%",
                str(r["failed_rows"]),
                str(r["eval_calls"]),
                str(r["compile_calls"]),
            ]
        )
    t = table(
        [
            "framework",
            "program",
            "stage",
            "EM (95% CI)",
            "F1",
            "both gold found",
            "failed rows",
            "eval calls",
            "compile calls",
        ],
        ["l", "l", "l"] + ["r"] * 6,
        rows,
    )
    one = d["programs"]["one_hop_recall_same_rows"]
    text = (
        f"One search with the question on the same rows finds both gold paragraphs {one['both@2']:.1f}% of the time "
        f"at k=2 and {one['both@4']:.1f}% at k=4."
    )
    return block(
        t,
        text,
        provenance(
            d,
            dspy=True,
            note=OLD_CALLS + " This run used `max_retries=1` and did not save "
            "`retries`, so its compile-call counts cannot be corrected."
            if d.get("run") is None
            else "",
        ),
    )


# ---------------------------------------------------------------------------- compile_instructions

CI_METHODS = {
    "hand_prompt": "one-line hand prompt, no compile",
    "zero_shot": "starting program (JSONAdapter), no compile",
    "random_search": "RandomSearch (best few-shot)",
    "instructions": "InstructionSearch (instructions only)",
    "formats": "InstructionSearch with formats",
    "joint": "JointSearch (optuna TPE)",
    "reflective": "ReflectiveEvolution",
    "mipro": 'MIPROv2 auto="light", ChatAdapter',
    "gepa": 'GEPA auto="light", ChatAdapter',
    "mipro_json": 'MIPROv2 auto="light", JSONAdapter, schema declared',
    "gepa_json": 'GEPA auto="light", JSONAdapter, schema declared',
    "auto": "Auto (portfolio, one call budget)",
}
CI_ORDER = list(CI_METHODS)


def _ci_part(d: dict[str, Any], row: dict[str, Any]) -> str:
    """The part file a merged row came from (matched on task, system and method)."""
    for i, part in enumerate(d.get("parts", [])):
        rows = load(part["file"].removesuffix(".json"))["table"]
        if any((r["task"], r["system"], r["method"]) == (row["task"], row["system"], row["method"]) for r in rows):
            return str(i + 1)
    return "?"


CI_HEADER = [
    "task",
    "system",
    "method",
    "dev acc % (95% CI)",
    "vs hand prompt, paired",
    "compile LM calls",
    "compile tokens",
    "compile wall s",
    "final prompt tokens",
    "format",
    "demos",
]
CI_ALIGN = ["l", "l", "l", "l", "l", "r", "r", "r", "r", "l", "r"]


def _ci_scored_cells(r: dict[str, Any], fmt: str) -> list[str]:
    """The cells after task, system and method of a compile_instructions row that has a dev score."""
    vs = r["vs_hand_prompt"]
    return [
        f"{r['dev_score']:.1f} [{r['dev_95'][0]:.1f}, {r['dev_95'][1]:.1f}]",
        "+0.0" if r["method"] == "hand_prompt" else f"{signed(vs[0])} [{signed(vs[1])}, {signed(vs[2])}]",
        str(r["compile_calls"]),
        str(r["compile_tokens"]),
        f"{r['compile_wall_s']:.0f}",
        str(r["prompt_tokens_final"]),
        fmt,
        str(r["demos"]),
    ]


@renderer("compile_instructions")
def compile_instructions_table(d: dict[str, Any]) -> str:
    rows = []
    for r in sorted(d["table"], key=lambda r: (r["task"], r["system"] != "oobleck", CI_ORDER.index(r["method"]))):
        system = "oobleck" if r["system"] == "oobleck" else "DSPy 3.4.1"
        fmt = r.get("format") or ("json" if r["method"].endswith("_json") else "chat")
        part = _ci_part(d, r)
        if r.get("dev_score") is None:
            rows.append(
                [
                    r["task"],
                    system,
                    CI_METHODS[r["method"]],
                    f"**crashed**: {r['error'].split(':')[0]}",
                    "",
                    "",
                    "",
                    "",
                    "",
                    fmt,
                    "",
                    part,
                ]
            )
            continue
        rows.append([r["task"], system, CI_METHODS[r["method"]], *_ci_scored_cells(r, fmt), part])
    t = table(
        [*CI_HEADER, "run"],
        [*CI_ALIGN, "r"],
        rows,
    )
    runs = []
    for i, part in enumerate(d["parts"]):
        p = load(part["file"].removesuffix(".json"))
        runs.append(f"Run {i + 1} (frameworks `{part['args']['frameworks']}`): " + provenance(p, dspy=True))
    return block(
        t, "\n\n".join(runs), OLD_CALLS + " Predict's default `max_retries` is 0 here, so the counts are unaffected."
    )


@renderer("compile_instructions.best", source="compile_instructions")
def compile_instructions_best(d: dict[str, Any]) -> str:
    out = []
    for task, g in d["goal"]["per_task"].items():
        out.append(
            f"  - {TASK_NAMES.get(task, task)}: our best of five on dev, {CI_METHODS[g['oobleck_best']]}, "
            f"{g['oobleck_dev_score']:.1f} at {g['oobleck_compile_calls']} calls; DSPy's best of two on dev, "
            f"{CI_METHODS[g['dspy_best']]}, {g['dspy_dev_score']:.1f} at {g['dspy_compile_calls']}."
        )
    return "\n" + "\n".join(out) + "\n"


@renderer("compile_instructions.single", source="compile_instructions")
def compile_instructions_single(d: dict[str, Any]) -> str:
    """Optimizers above DSPy's best on every task, with no choice among optimizers."""
    tasks = d["goal"]["per_task"]
    ours = {r["method"] for r in d["table"] if r["system"] == "oobleck"} - {"hand_prompt", "zero_shot"}
    above = []
    for m in sorted(ours, key=CI_ORDER.index):
        cells = []
        for task, g in tasks.items():
            row = next(r for r in d["table"] if (r["task"], r["system"], r["method"]) == (task, "oobleck", m))
            if row["dev_score"] <= g["dspy_dev_score"] or row["compile_calls"] > g["dspy_compile_calls"]:
                break
            cells.append(f"{row['dev_score']:.1f} vs {g['dspy_dev_score']:.1f}")
        else:
            above.append(f"{CI_METHODS[m]} ({', '.join(cells)})")
    return "; ".join(above) if above else "none"


@renderer("compile_instructions.vs_start", source="compile_instructions")
def compile_instructions_vs_start(d: dict[str, Any]) -> str:
    """The SST-2 winner's paired dev gain over the uncompiled starting program, from per-row scores."""
    g = d["goal"]["per_task"]["sst2"]
    run = next(r for r in d["runs"] if r["framework"] == "oobleck" and r["task"] == "sst2")
    a, b = run["methods"][g["oobleck_best"]]["dev_scores"], run["methods"]["zero_shot"]["dev_scores"]
    return paired_text(a, b)


def paired_text(a: list[float], b: list[float]) -> str:
    """Mean paired difference (in points) with its 95% Student t interval."""
    import statistics

    diffs = [100 * (x - y) if max(a + b) <= 1 else x - y for x, y in zip(a, b)]
    n = len(diffs)
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    t = _t975(n - 1)
    half = t * sd / n**0.5
    return f"{signed(mean)} [{signed(mean - half)}, {signed(mean + half)}]"


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t (normal approximation with a Cornish-Fisher correction)."""
    z = 1.959963984540054
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


@renderer("compile_instructions.racing", source="compile_instructions")
def compile_instructions_racing(d: dict[str, Any]) -> str:
    saved, searches = [], 0
    for run in d["runs"]:
        if run["framework"] != "oobleck":
            continue
        for method, m in run["methods"].items():
            racing = m.get("racing")
            if racing is None:
                continue
            searches += 1
            if racing.get("dropped") or racing.get("calls_saved"):
                saved.append(
                    f"{racing['calls_saved']} calls on {TASK_NAMES.get(run['task'], run['task'])}'s "
                    f"{CI_METHODS.get(method, method)} ({racing['dropped']} dropped)"
                )
    rest = searches - len(saved)
    return (
        "Racing saved "
        + ("; ".join(saved) if saved else "nothing")
        + f". In the other {rest} searches it dropped no candidate (at these runs' commits racing could not drop "
        "anything before 20 rows, which leaves at most 4 of the 24-row valset; it has since been replaced by an "
        "anytime-valid test that may drop from max(5, 10% of the valset) rows on)."
    )


AUTO_RUNS = ("compile_instructions_auto_sst2", "compile_instructions_auto_trec")


def _interval_text(v: dict[str, Any] | list[float]) -> str:
    """``+g [+l, +h]`` from a verdict dict or a ``[gain, low, high]`` list."""
    g, lo, hi = (v["gain"], v["low"], v["high"]) if isinstance(v, dict) else v
    return f"{signed(g)} [{signed(lo)}, {signed(hi)}]"


@renderer("compile_instructions.auto", source=AUTO_RUNS[0])
def compile_instructions_auto(first: dict[str, Any]) -> str:
    """Auto beside the hand prompt, the starting program and DSPy (JSON, schema declared), one run per task."""
    rows, sources = [], []
    for d in (first, load(AUTO_RUNS[1])):
        for r in sorted(d["table"], key=lambda r: (r["system"] != "oobleck", CI_ORDER.index(r["method"]))):
            system = "oobleck" if r["system"] == "oobleck" else "DSPy 3.4.1"
            fmt = r.get("format") or ("json" if r["method"].endswith("_json") else "chat")
            if r.get("dev_score") is None:
                why = (
                    "**killed** (exit code -15)" if "exit code -15" in r["error"] else f"**failed**: {r['error'][:60]}"
                )
                rows.append([r["task"], system, CI_METHODS[r["method"]], why])
                rows[-1] += [""] * 7
                continue
            method = CI_METHODS[r["method"]]
            if r["method"] == "auto":
                method = f"Auto(budget={d['args']['auto_budget']})"
            rows.append([r["task"], system, method, *_ci_scored_cells(r, fmt)])
        sources.append(f"{TASK_NAMES[d['args']['tasks']]}: " + provenance(d, dspy=True))
    t = table(CI_HEADER, CI_ALIGN, rows)
    return block(t, "\n\n".join(sources))


EARLIER_DSPY = "compile_instructions_dspy_json"


def _auto_vs_earlier_dspy(d: dict[str, Any], task: str, g: dict[str, Any]) -> str:
    """Auto paired with DSPy's best row of the earlier DSPy-only run (same dev rows, another process run)."""
    other = load(EARLIER_DSPY)
    methods = next(r for r in other["runs"] if r["framework"] == "dspy" and r["task"] == task)["methods"]
    name, m = max(((k, v) for k, v in methods.items() if "error" not in v), key=lambda kv: kv[1]["dev_score"])
    auto = next(r for r in d["runs"] if r["framework"] == "oobleck")["methods"]["auto"]
    score = 100 * sum(m["dev_scores"]) / len(m["dev_scores"])
    above = auto["dev"]["score"] >= round(score, 1)
    fewer = g["auto_compile_calls"] < m["compile"]["calls"]
    met = g["sign_agrees"] and above and fewer
    return (
        f"  - DSPy's row in this run was killed (see the table), so DSPy's best comes from the earlier DSPy-only run "
        f"(`results/{EARLIER_DSPY}.json`, commit `{other['machine']['oobleck_commit']}`), on the same 200 dev rows: "
        f"{CI_METHODS[name]}, {score:.1f} at {m['compile']['calls']} calls. Auto {auto['dev']['score']:.1f} at "
        f"{g['auto_compile_calls']} calls; paired Auto minus DSPy {paired_text(auto['dev_scores'], m['dev_scores'])}; "
        f"at or above: {'yes' if above else 'no'}, fewer calls: {'yes' if fewer else 'no'}. **Goal "
        f"{'met' if met else 'missed'} against that run, not in one process run.**"
    )


@renderer("compile_instructions.auto_goal", source=AUTO_RUNS[0])
def compile_instructions_auto_goal(first: dict[str, Any]) -> str:
    """Per task: Auto's choice, its two verdicts, its dev gain, and the paired comparison with DSPy's best."""
    out = []
    for d in (first, load(AUTO_RUNS[1])):
        for task, g in d["auto_goal"]["per_task"].items():
            auto = next(r for r in d["runs"] if r["framework"] == "oobleck")["methods"]["auto"]["auto"]
            members = ", ".join(
                f"{m['name']} {m['selection_score']:.1f}"
                if m.get("selection_score") is not None
                else f"{m['name']} ({m.get('skipped') or m.get('error') or 'no score'})"
                for m in auto["members"]
            )
            split = auto["split"]
            sel = g["selection_verdict"]
            v = g["confirmed_verdict"]
            lines = [
                f"- **{TASK_NAMES.get(task, task)}**: Auto spent {g['auto_compile_calls']} of its "
                f"{g['auto_budget']['max_lm_calls']} calls and kept **{g['auto_winner']}** on the "
                f"{split.get('selection_rows')} selection rows (start {auto['start_selection_score']:.1f}; {members}).",
                "  - selection-row verdict: " + ("none (the start won)" if sel is None else _interval_text(sel)) + ";",
                f"  - confirmed verdict ({split.get('confirm_rows')} rows no member saw): "
                + (
                    _interval_text(v) + (" (significant)" if v.get("significant") else " (not significant)")
                    if v.get("confirmed")
                    else f"none, {v['reason']}"
                )
                + ";",
                f"  - on the 200 dev rows, Auto minus the starting program: {_interval_text(g['dev_gain_vs_start'])}; "
                f"**sign agrees: {'yes' if g['sign_agrees'] else 'no'}**;",
            ]
            if "dspy_best" in g:
                lines.append(
                    f"  - Auto {g['auto_dev']['score']:.1f} at {g['auto_compile_calls']} calls vs DSPy's best on dev, "
                    f"{CI_METHODS[g['dspy_best']]}, {g['dspy_dev']['score']:.1f} at {g['dspy_compile_calls']} calls; "
                    f"paired Auto minus DSPy {_interval_text(g['auto_minus_dspy_best'])}; at or above: "
                    f"{'yes' if g['at_or_above_dspy_best'] else 'no'}, fewer calls: "
                    f"{'yes' if g['fewer_calls'] else 'no'}. **Goal {'met' if g['goal_met'] else 'missed'}.**"
                )
            else:
                lines.append(_auto_vs_earlier_dspy(d, task, g))
            out.extend(lines)
    return "\n" + "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- soft_prompts


@renderer("soft_prompts")
def soft_prompts_table(d: dict[str, Any]) -> str:
    tasks = d["tasks"]

    def cell(x: dict[str, Any], extra: str = "") -> str:
        return f"{x['accuracy']:.1f} ({ci(*x['ci95'])})" + (f", {extra}" if extra else "")

    def soft(x: dict[str, Any]) -> str:
        return cell(
            x,
            f"{x['steps']} steps, {x['train_seconds']:.0f} s, best step {x['best_step']}"
            + (" (the untrained start)" if x["best_step"] == 0 else ""),
        )

    names = list(tasks)
    first = tasks[names[0]]
    rows = [
        ["zero-shot, generate and parse"] + [cell(tasks[t]["zero_shot_generate"]) for t in names],
        ["zero-shot, score labels"] + [cell(tasks[t]["zero_shot_score"]) for t in names],
        [f"hard compile ({first['hard_compile_score']['how']})"]
        + [cell(tasks[t]["hard_compile_score"]) for t in names],
        [
            "prompt tuning from that hard prompt (virtual tokens: "
            + " / ".join(str(tasks[t]["prompt_tuning_from_hard_compile"]["virtual_tokens"]) for t in names)
            + ")"
        ]
        + [soft(tasks[t]["prompt_tuning_from_hard_compile"]) for t in names],
        [
            f"prefix tuning, {first['prefix_tuning']['virtual_tokens']} tokens "
            f"({thousands(first['prefix_tuning']['trainable_params'])} params)"
        ]
        + [soft(tasks[t]["prefix_tuning"]) for t in names],
        [
            f"P-tuning MLP, {first['p_tuning_mlp']['virtual_tokens']} tokens "
            f"({thousands(first['p_tuning_mlp']['trainable_params'])} params)"
        ]
        + [soft(tasks[t]["p_tuning_mlp"]) for t in names],
    ]
    head = [f"accuracy % (95% Wilson), {first['dev_rows']} dev rows"] + [TASK_NAMES.get(t, t) for t in names]
    mt = d["multitask"]
    changes = ", ".join(
        f"{TASK_NAMES.get(t, t)} {mt[t]['zero_shot_score']['accuracy']:.1f} → {mt[t]['mpt']['accuracy']:.1f}"
        for t in mt["tasks"]
    )
    mt_text = (
        f"Multi-task prompt tuning (one shared prompt over {', '.join(mt['tasks'])}, then adapted to each; "
        f"{mt['train_seconds_total']:.0f} s of training in all; {thousands(mt[mt['tasks'][0]]['mpt']['trainable_params_adapt'])} "
        f"task-specific parameters; {mt['dev_rows_per_task']} dev rows per task), zero-shot scoring → adapted: {changes}."
    )
    complete = "" if d.get("complete") else " The JSON says `complete: false` (the throughput part was cut)."
    return block(table(head, ["l"] * (1 + len(names)), rows), mt_text, provenance(d, note=complete.strip()))


@renderer("soft_prompts.throughput")
def soft_prompts_throughput(d: dict[str, Any]) -> str:
    tp = d["throughput"]
    names = {
        "transformers_batched_8_threads": "TransformersLM, 8 threads calling at once",
        "transformers_one_at_a_time": "TransformersLM, one call at a time",
        "llamacpp_local_4_slots_8_threads": "LocalLM (llama.cpp, Q4_1), 4 slots, 8 threads calling",
        "llamacpp_local_one_at_a_time": "LocalLM, one call at a time",
    }
    rows = [[label, f"{tp[k]['tokens_per_s']:g}", f"{tp[k]['seconds']:.0f}"] for k, label in names.items()]
    text = f"{tp['prompts']} prompts, greedy, at most {tp['max_tokens']} tokens, no cache."
    return block(text, table(["backend", "completion tokens/s", "wall s"], ["l", "r", "r"], rows), provenance(d))


# ---------------------------------------------------------------------------- react

REACT_ROWS = (
    ("dspy", "zero_shot", "DSPy zero-shot"),
    ("dspy", "bootstrap", "DSPy BootstrapFewShot"),
    ("dspy", "mipro", "DSPy MIPROv2 light"),
    ("oobleck", "zero_shot", "oobleck zero-shot"),
    ("oobleck", "bootstrap", "oobleck BootstrapFewShot"),
    ("oobleck", "auto", "oobleck Auto"),
)


def _react_cell(kind: str, m: dict[str, Any] | None) -> list[str]:
    if m is None:
        return ["not run"] + ["–"] * 5
    if "error" in m:
        why = m["error"] if m["error"].startswith("not run") else f"**failed**: {m['error'][:160]}"
        return [why.replace("|", "/").replace("\n", " ")] + ["–"] * 5
    score = (
        f"{num(m['em'])} ({ci(*m['em_ci95'])}) / {num(m['f1'])} ({ci(*m['f1_ci95'])})"
        if kind == "hotpotqa"
        else f"{num(m['em'])} ({ci(*m['em_ci95'])})"
    )
    return [
        score,
        f"{m['unparsed_steps']}/{m['steps']} ({num(100 * m['unparsed_share'])}%)",
        num(m["steps_per_question"], 2),
        thousands(m["eval_calls"]),
        num(m["seconds_per_row"]),
        thousands((m.get("compile") or {}).get("calls")),
    ]


@renderer("react")
def react_table(d: dict[str, Any]) -> str:
    pieces = []
    for kind in d["args"]["sets"].split(","):
        s = d["sets"][kind]
        label = "HotPotQA: EM (95% CI) / F1 (95% CI)" if kind == "hotpotqa" else "GSM8K: accuracy (95% CI)"
        rows = []
        for fw, method, name in REACT_ROWS:
            rows.append([name, *_react_cell(kind, s.get(fw, {}).get(method))])
        header = [
            f"{kind} ({s['dev']} dev rows, {s['train']} train)",
            label,
            "unparseable actions",
            "steps / question",
            "LM calls (eval)",
            "s / row",
            "compile LM calls",
        ]
        pieces.append(table(header, ["l", "r", "r", "r", "r", "r", "r"], rows))
    g = d["goal"]
    lines = [f"Goals: {g['statement']}."]
    lines.append(
        f"- 0 unparseable actions (oobleck): **{'met' if g['zero_unparsed_met'] else 'not met'}** "
        f"({g['oobleck_unparsed_steps']} unparseable steps)."
    )
    for kind, e in g["per_set"].items():
        tests = ", ".join(
            f"{k.removesuffix('_vs_zero_shot')} vs zero-shot {v['wins']} wins / {v['losses']} losses, p={v['p']:g}"
            for k, v in e.items()
            if k.endswith("_vs_zero_shot")
        )
        best = ""
        if "above_dspy_best" in e:
            best = (
                f"; oobleck's best ({e['oobleck_best']['row']}, EM {num(e['oobleck_best']['em'])}) vs DSPy's best "
                f"({e['dspy_best']['row']}, EM {num(e['dspy_best']['em'])}): above "
                f"**{'yes' if e['above_dspy_best'] else 'no'}**, LM calls {e['calls']['oobleck_best']} vs "
                f"{e['calls']['dspy_best']}"
            )
        lines.append(f"- {kind}: {tests or 'no paired test'}{best}.")
    lines.append(
        f"- compiled significantly above zero-shot on a set: **{'met' if g['compiled_significant_met'] else 'not met'}**; "
        f"above DSPy's best on both sets at no more calls: **{'met' if g['above_dspy_met'] else 'not met'}**."
    )
    return block(*pieces, "\n".join(lines), provenance(d, dspy=True))


# ---------------------------------------------------------------------------- the scripts


SCRIPTS = {
    "overhead": "PYTHONPATH=. python benchmarks/overhead.py",
    "default_adapter": "PYTHONPATH=. python benchmarks/default_adapter.py --limit 40 --tasks sst2,trec",
    "parse_robustness": "PYTHONPATH=. python benchmarks/parse_robustness.py --limit 40 --max-tokens 64",
    "reliability": "PYTHONPATH=. python benchmarks/reliability.py --threads 16 --calls 500 --distinct 8 --clients 200 "
    "--parts threads,serve",
    "compile_fewshot": "PYTHONPATH=. python benchmarks/compile_fewshot.py",
    "hotpotqa": "PYTHONPATH=. python benchmarks/hotpotqa.py --skip-retrievers --dev 50 --train 12 --instruction-budget 60 "
    "--instruction-val 16 --search-candidates 3 --n-threads 1 --threads 2",
    "compile_instructions": "cd benchmarks && PYTHONPATH=.. python compile_instructions.py --tasks sst2 --train 100 "
    "--val 24 --dev 200",
    "soft_prompts": "PYTHONPATH=. nice -n 10 python benchmarks/soft_prompts.py",
    "serve": "PYTHONPATH=. python benchmarks/serve.py",
    "react": "cd benchmarks && PYTHONPATH=.. python react.py --dev 8 --train 4 --max-iters 3 --threads 4 --auto-budget 30 "
    "--dspy-timeout 420 --time-limit 2700",
    **{
        f"compile_instructions_auto_{t}": f"PYTHONPATH=. python benchmarks/compile_instructions.py --tasks {t} "
        "--train 100 --val 24 --dev 200 --methods zero_shot,hand_prompt,auto --frameworks oobleck,dspy "
        f"--dspy-methods mipro:json --out compile_instructions_auto_{t}"
        for t in ("sst2", "trec")
    },
}
#: The script of a result whose name is not the script's.
SCRIPT_OF = {f"compile_instructions_auto_{t}": "compile_instructions" for t in ("sst2", "trec")}


@renderer("scripts", source="overhead")
def scripts_table(_: dict[str, Any]) -> str:
    rows = []
    for name, command in SCRIPTS.items():
        d = load(name)
        runs = [load(p["file"].removesuffix(".json")) for p in d["parts"]] if "parts" in d else [d]
        walls, ends = [], []
        for r in runs:
            seconds = r.get("elapsed_s") or r.get("total_seconds")
            walls.append(f"{seconds / 60:.0f} min" if seconds else "not recorded")
            end = r["machine"].get("loadavg_at_end")
            ends.append(f"{end[0]:g}" if end else "not recorded")
        script = SCRIPT_OF.get(name, name)
        label = f"`{script}.py`" + (f" (`{name}.json`)" if script != name else "")
        rows.append([label, f"`{command}`", " / ".join(walls), " / ".join(ends)])
    return block(
        table(
            [
                "script",
                "command (from the repo root)",
                "last run's wall time (its JSON)",
                "1-min load average at its end",
            ],
            ["l", "l", "r", "r"],
            rows,
        ),
        "`compile_instructions.py` runs one task per process, then `--merge` (see its section); its "
        "cells list the merged runs in order.",
    )


# ---------------------------------------------------------------------------- artifact loading


@renderer("artifact_load")
def artifact_load_table(d: dict[str, Any]) -> str:
    mib = 1024 * 1024

    def side(m: dict[str, Any] | None, size: int) -> list[str]:
        if not m:
            return ["not measured", ""]
        if m.get("error"):
            return [f"{m['seconds']:.1f}" if "seconds" in m else "–", f"**{m['error']}** under the cap"]
        return [f"{m['seconds']:.1f}", f"{m['load_bytes'] / mib:,.0f} MiB ({m['load_bytes'] / size:.1f}×)"]

    rows = []
    for r in d["rows"]:
        size = r["file_bytes"]
        shape = "one long demo" if r["shape"] == "long" else f"{r['demos']:,} demos of 1.2 KB"
        rows.append([shape, f"{size / mib:.0f}", *side(r.get("before"), size), *side(r.get("after"), size)])
    before = d.get("before_commit") or "not measured"
    cap = f"{d['cap_bytes'] / 1024**3:g} GiB" if d.get("cap_bytes") else "none"
    t = table(
        [
            "artifact",
            "file MiB",
            f"before (`{before}`) s",
            "before: load's peak memory (× file)",
            "after s",
            "after: load's peak memory (× file)",
        ],
        ["l", "r", "r", "r", "r", "r"],
        rows,
    )
    met = "**met**" if d["goal_met"] else "**not met**"
    goal = (
        f"Goal: the load's own peak memory under 4× the file size, for every size: {met}. Each load ran in a "
        f"fresh process under an address-space cap of {cap}; the peak is the process's VmHWM, reset once "
        "oobleck was imported, minus its RSS then."
    )
    return block(t, goal, provenance(d))


# ---------------------------------------------------------------------------- rewriting


def render(key: str) -> str:
    """The text for one marked region."""
    if key.startswith("v:"):
        return _value(key)
    name, _, source = key.partition("@")
    if name not in RENDERERS:
        raise KeyError(f"no renderer {name!r} (marker {key!r}); known: {', '.join(sorted(RENDERERS))}")
    default, fn = RENDERERS[name]
    return fn(load(source or default))


def rewrite(text: str) -> str:
    """``text`` with every marked region rendered afresh."""

    def one(m: re.Match[str]) -> str:
        kind, key = m.group(1), m.group("key")
        return f"<!-- {kind}:{key} -->{render(key)}<!-- /{kind} -->"

    return MARK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 with a diff if a region is stale")
    a = ap.parse_args(argv)
    stale = 0
    for path in DOCS:
        old = path.read_text(encoding="utf-8")
        new = rewrite(old)
        if new == old:
            continue
        if a.check:
            stale += 1
            rel = str(path.relative_to(ROOT))
            sys.stdout.writelines(
                difflib.unified_diff(old.splitlines(True), new.splitlines(True), rel, rel + " (from JSON)")
            )
        else:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}", file=sys.stderr)
    if stale:
        print(f"\n{stale} file(s) disagree with benchmarks/results: run `python benchmarks/tables.py`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
