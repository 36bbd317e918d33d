"""Artifact loading: seconds and peak memory for 1, 10 and 100 MiB artifacts, before and after.

Issue 20: a 100 MiB artifact (under the 256 MiB cap) took 44 s and 12.5 GB to load, 10 MiB took
1.3 GB; the nesting pre-check was the cost. Goal: peak memory under 4x the file size.

The artifacts are one ``Predict`` with many demos of long text (newlines and quotes in it, so
the JSON has escapes), about half the file in the demos and half in the stored template that
repeats them. Each is loaded in a fresh subprocess that imports oobleck, records its peak RSS
(``ru_maxrss``) after the import as the baseline, loads the file and records the peak again;
the load's own cost is the difference. "Before" is the code at ``--before`` (default
``783cbd4``, the commit before issue 20) extracted with ``git archive`` into a temporary folder;
"after" is this checkout. The peak is the child's ``VmHWM`` after resetting it (``/proc/self/clear_refs``)
once oobleck is imported, so it is the load's own peak (``ru_maxrss`` is recorded too: it also
holds the import's). Each child runs under an address-space limit (``--cap-gib``, default
4), so a load that would need more dies with MemoryError instead of swapping the machine.

    PYTHONPATH=. python benchmarks/artifact_load.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, machine, write_result

MIB = 1024 * 1024

_CHILD = r"""
import gc, json, resource, sys, time
cap = int(sys.argv[2])
if cap:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


import oobleck
from oobleck.artifact import load
gc.collect()
try:  # reset the peak RSS (VmHWM) to the current RSS, so the peak measured is the load's own
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
base = status("VmRSS")
start = time.perf_counter()
try:
    art = load(sys.argv[1])
    error = None
    demos = len(art.predictors["self"].demos)
except MemoryError:
    error, demos = "MemoryError", None
seconds = time.perf_counter() - start
print(json.dumps({
    "seconds": seconds, "baseline_bytes": base, "peak_bytes": status("VmHWM"), "hwm_reset": reset,
    "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "error": error, "demos": demos,
    "oobleck_from": oobleck.__file__,
}))
"""


def build(path: Path, target_bytes: int, shape: str) -> dict[str, Any]:
    """An artifact of about ``target_bytes``: one predictor with long-text demos.

    ``shape`` "many": demos of about 1.2 KB each. "long": one demo whose text is the whole
    payload (the file holds it twice: in the demo and in the stored template), the shape that
    cost the most before.
    """
    from oobleck import Predict
    from oobleck.adapters import ChatAdapter

    line = 'The film\'s "quiet" second act drags, but the ending lands.\n'

    def save(n: int) -> int:
        if shape == "many":
            text = line * 20
            demos = [{"text": f"review {i}: {text}", "label": "positive" if i % 2 else "negative"} for i in range(n)]
        else:
            demos = [{"text": line * n, "label": "positive"}]
        # A named adapter: the file is then readable by the code before issue 20 too (it did not
        # know the "auto" adapter record).
        Predict("text -> label", demos=demos, adapter=ChatAdapter()).save(path)
        return path.stat().st_size

    probe = 200
    per_unit = save(probe) / probe
    n = max(1, int(target_bytes / per_unit))
    size = save(n)
    return {"file_bytes": size, "demos": n if shape == "many" else 1}


def measure(code: Path, path: Path, cap: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    # cwd: the artifact's folder, since ``python -c`` puts the cwd first on sys.path (run from the
    # repo root, the child would import this checkout whatever PYTHONPATH says)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(cap)],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {tail[0]}"}
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(out["oobleck_from"]).resolve().is_relative_to(code.resolve()):
        raise RuntimeError(f"the child imported {out['oobleck_from']}, not the code under {code}")
    out["oobleck_from"] = str(Path(out["oobleck_from"]).resolve().relative_to(code.resolve()).parent)
    if out.get("error") is None:
        out["load_bytes"] = out["peak_bytes"] - out["baseline_bytes"]
    return out


def old_checkout(commit: str, folder: Path) -> Path:
    """The ``oobleck`` package at ``commit``, extracted (no change to the repository)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "oobleck"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="artifact sizes in MiB")
    parser.add_argument("--shapes", default="long,many", help="'long' (one huge demo), 'many' (1.2 KB demos)")
    parser.add_argument("--before", default="783cbd4", help="the commit measured as 'before' ('' to skip)")
    parser.add_argument("--cap-gib", type=float, default=4.0, help="address-space limit of each load (0: none)")
    args = parser.parse_args()
    cap = int(args.cap_gib * 1024**3)
    sizes = [float(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = old_checkout(args.before, folder / "before") if args.before else None
        for shape in args.shapes.split(","):
            for mib in sizes:
                path = folder / f"artifact-{shape}-{mib:g}mib.json"
                built = build(path, int(mib * MIB), shape)
                row: dict[str, Any] = {"shape": shape, "target_mib": mib, **built}
                row["after"] = measure(ROOT, path, cap)
                if old is not None:
                    row["before"] = measure(old, path, cap)
                for side in ("before", "after"):
                    m = row.get(side)
                    if m and m.get("error") is None and "load_bytes" in m:
                        m["load_over_file"] = round(m["load_bytes"] / built["file_bytes"], 2)
                rows.append(row)
                path.unlink()
                print(json.dumps(row), file=sys.stderr)
    after = [r["after"] for r in rows]
    result = {
        "benchmark": "artifact_load",
        "before_commit": args.before or None,
        "cap_bytes": cap or None,
        "rows": rows,
        "goal": "the load's own peak memory (VmHWM reset after importing oobleck, minus the RSS then) under 4x the file size",
        "goal_met": all(m.get("error") is None and m["load_bytes"] < 4 * r["file_bytes"] for m, r in zip(after, rows)),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }
    write_result("artifact_load", result)


if __name__ == "__main__":
    main()
