"""Issue 17's goals for label_scoring.py, checked on per-row scores (shared by the script and tables.py).

A task's cells are ``{"<mode>/<stage>": cell}`` as label_scoring.py writes them (``row_scores``
on the same dev rows in the same order, ``collapse_ratio``, ``most_frequent``). The goals:

  calibrated_vs_generate  per stage: the better calibrated scored cell (contextual or batch,
                          picked on the dev rows, which flatters it) minus the best generating
                          cell of that stage, paired on the dev rows; met when the 95% interval
                          is above 0. The contextual cell (the default) is reported beside it.
                          ``compiled`` pools every compiler's cells.
  collapse                every cell: its most frequent answer's share over that label's true
                          share is at most 1.5 (an answer never in the gold rows counts as over)
  compiled_vs_dspy        the better compiled calibrated cell minus DSPy MIPROv2 (JSON,
                          constrained) on the same rows; met when the gain is above 0 (the
                          issue asks "above"; whether the interval clears 0 is reported too)

Cells of several runs can be pooled (tables.py does, across result files) because every run
evaluates the same dev rows in the file's order.

    PYTHONPATH=. python benchmarks/label_goals.py label_scoring_joint [...]

adds (or refreshes) ``tasks.<task>.goals`` in results/<name>.json from that file's own cells,
for results written before label_scoring.py computed them, and ``tasks.<task>.comparisons``
(label_scoring.compare) where a run was stopped before writing them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from oobleck.optimize import paired_interval

CALIBRATED = ("contextual", "batch")
COLLAPSE_LIMIT = 1.5


def _stage_of(name: str) -> str:
    return name.split("/", 1)[1]


def _mode_of(name: str) -> str:
    return name.split("/", 1)[0]


def _best(cells: dict[str, Any], modes: tuple[str, ...], stages: set[str]) -> str | None:
    """The name of the most accurate cell among ``modes`` x ``stages`` (ties: the first name)."""
    names = sorted(n for n in cells if _mode_of(n) in modes and _stage_of(n) in stages)
    return max(names, key=lambda n: cells[n]["accuracy"]) if names else None


def _paired(cells: dict[str, Any], mine: str, rows: list[float]) -> dict[str, Any]:
    return paired_interval(cells[mine]["row_scores"], rows).to_dict()


def calibrated_vs_generate(cells: dict[str, Any]) -> dict[str, Any]:
    """Per stage (and ``compiled``, pooling the compilers): calibrated scored minus the best generating."""
    stages = sorted({_stage_of(n) for n in cells}, key=lambda s: (s != "zero_shot", s))
    groups = {s: {s} for s in stages}
    compiled = {s for s in stages if s != "zero_shot"}
    if len(compiled) > 1:
        groups["compiled"] = compiled
    found: dict[str, Any] = {}
    for label, group in groups.items():
        gen = _best(cells, ("generate",), group)
        cal = _best(cells, CALIBRATED, group)
        if gen is None or cal is None:
            found[label] = {"computable": False, "why": "no generating or no calibrated cell at this stage"}
            continue
        gen_rows = cells[gen]["row_scores"]
        best = _paired(cells, cal, gen_rows)
        entry: dict[str, Any] = {
            "computable": True,
            "best_generate": gen,
            "best_generate_accuracy": cells[gen]["accuracy"],
            "best_calibrated": cal,
            "best_calibrated_accuracy": cells[cal]["accuracy"],
            "difference": best,
            "met": best["low"] > 0,
        }
        ctx = _best(cells, ("contextual",), group)
        if ctx is not None:
            entry["contextual"] = ctx
            entry["contextual_difference"] = _paired(cells, ctx, gen_rows)
        found[label] = entry
    return found


def collapse(cells: dict[str, Any]) -> dict[str, Any]:
    """Cells whose top answer is over 1.5x its true share (None: a label the gold rows never hold)."""
    over = {}
    for name, c in sorted(cells.items()):
        ratio = c.get("collapse_ratio")
        if ratio is None or ratio > COLLAPSE_LIMIT:
            top = c["most_frequent"]
            over[name] = {"label": top["label"], "share": top["share"], "true_share": top["true_share"], "ratio": ratio}
    return {"cells": len(cells), "over": over, "met": not over, "limit": COLLAPSE_LIMIT}


def compiled_vs_dspy(cells: dict[str, Any], dspy_rows: list[float] | None) -> dict[str, Any]:
    """The better compiled calibrated cell minus DSPy MIPROv2 (JSON), paired."""
    compiled = {_stage_of(n) for n in cells if _stage_of(n) != "zero_shot"}
    if not dspy_rows:
        return {"computable": False, "why": "DSPy was not run on these rows"}
    cal = _best(cells, CALIBRATED, compiled)
    if cal is None:
        return {"computable": False, "why": "no compiled calibrated cell"}
    if len(dspy_rows) != len(cells[cal]["row_scores"]):
        return {"computable": False, "why": "DSPy ran on other rows"}
    diff = _paired(cells, cal, [float(x) for x in dspy_rows])
    dspy_acc = round(100.0 * sum(float(x) for x in dspy_rows) / len(dspy_rows), 2)
    return {
        "computable": True,
        "best_calibrated": cal,
        "best_calibrated_accuracy": cells[cal]["accuracy"],
        "dspy_accuracy": dspy_acc,
        "difference": diff,
        "significant": diff["low"] > 0,
        "met": diff["gain"] > 0,
    }


def goals(cells: dict[str, Any], dspy_rows: list[float] | None) -> dict[str, Any]:
    """All three goals for one task's cells."""
    return {
        "calibrated_vs_generate": calibrated_vs_generate(cells),
        "collapse": collapse(cells),
        "compiled_vs_dspy": compiled_vs_dspy(cells, dspy_rows),
    }


def main(names: list[str]) -> int:
    for name in names:
        path = Path(__file__).resolve().parent / "results" / f"{name}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        from label_scoring import compare  # label_scoring imports this module: import here

        settings = SimpleNamespace(compile=data["settings"]["compile"])
        for task in data["tasks"].values():
            task["goals"] = goals(task["cells"], task.get("dspy_mipro_json", {}).get("dev_scores"))
            task.setdefault("comparisons", compare(task, settings))
        data["goals_written_by"] = "label_goals.py (from this file's cells, after the run)"
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"goals written into {path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
