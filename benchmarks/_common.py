"""Shared helpers for the benchmark scripts: where things are, how to run the DSPy side, and
how results are written.

The oobleck side of every benchmark runs in-process (system python, this checkout on
PYTHONPATH); the DSPy side runs `benchmarks/dspy_side/*.py` with the DSPy venv's python
(see setup_dspy.sh), so DSPy is never imported here.
"""

from __future__ import annotations

import collections
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DSPY_SIDE = BENCH / "dspy_side"
RESULTS = BENCH / "results"
DSPY_VENV = Path(os.environ.get("DSPY_VENV", "/work/.venv-dspy"))
DSPY_PY = DSPY_VENV / "bin" / "python"
DATA = Path(os.environ.get("OOBLECK_DATA", "/work/shared/data"))

# The machine's load when this process started (the benchmark scripts import this module first),
# recorded beside the load at the end by write_result: other jobs share the CPUs.
try:
    LOAD_AT_START: list[float] | None = [round(x, 2) for x in os.getloadavg()]
except OSError:
    LOAD_AT_START = None

# How many times this process ran the DSPy side (run_dspy_side): the result's
# `run.dspy_same_run` is true only when DSPy's rows were produced by this very process.
_DSPY_RUNS = 0

# Both interpreters write and read bytecode under one throw-away prefix, so neither side pays
# for compiling source (this machine sets PYTHONDONTWRITEBYTECODE=1, and the checkout has no
# __pycache__) and both are measured with warm .pyc files, as an installed package would be.
PYCACHE = Path(os.environ.get("OOBLECK_BENCH_PYCACHE", "/tmp/oobleck-bench-pycache"))


def _banking77_labels() -> tuple[str, ...]:
    """The 77 intents in the order of data/banking77/labels.json (empty without the data)."""
    path = DATA / "banking77" / "labels.json"
    return tuple(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else ()


# The tasks both benchmarks run, with the same signatures on the oobleck and DSPy sides.
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {
        "instructions": "Classify the sentiment of a movie review sentence.",
        "input": "text",
        "labels": ("positive", "negative"),
    },
    "trec": {
        "instructions": "Classify the question by the type of its expected answer.",
        "input": "question",
        "labels": ("abbreviation", "description", "entity", "human", "location", "numeric"),
    },
    "tweet_sentiment": {
        "instructions": "Classify the sentiment of the tweet.",
        "input": "text",
        "labels": ("negative", "neutral", "positive"),
        "dir": "tweeteval/sentiment",
    },
    "banking77": {
        "instructions": "Classify the banking customer's message by its intent.",
        "input": "text",
        # the 77 intents in the order of data/banking77/labels.json
        "labels": _banking77_labels(),
    },
}


def task_dir(task: str) -> Path:
    """The task's data folder under ../shared/data."""
    return DATA / str(TASKS[task].get("dir", task))


def signature(task: str) -> Any:
    """The task's oobleck Signature (labels as a Literal, the shared instruction)."""
    import oobleck

    spec = TASKS[task]
    labels = ", ".join(repr(x) for x in spec["labels"])
    return oobleck.Signature(f"{spec['input']} -> label: Literal[{labels}]").with_instructions(spec["instructions"])


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(framework: str) -> dict[str, str]:
    """The environment for a subprocess of one framework's interpreter."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    # Keeps LiteLLM (under DSPy) from fetching its model cost map over the network.
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    if framework == "oobleck":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    else:
        env.pop("PYTHONPATH", None)
    return env


def python_for(framework: str) -> str:
    """The interpreter that runs one framework."""
    return sys.executable if framework == "oobleck" else str(DSPY_PY)


def require_dspy_venv() -> None:
    """Exit with the setup command when the DSPy venv is missing."""
    if not DSPY_PY.exists():
        sys.exit(f"no DSPy venv at {DSPY_VENV}: run `bash benchmarks/setup_dspy.sh` first")


def run_dspy_side(script: str, *args: str, timeout: float | None = None) -> dict[str, Any]:
    """Run ``dspy_side/<script>`` in the DSPy venv and return the JSON object it printed."""
    global _DSPY_RUNS
    _DSPY_RUNS += 1
    cmd = [str(DSPY_PY), str(DSPY_SIDE / script), *args]
    proc = subprocess.run(cmd, env=env_for("dspy"), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"{' '.join(cmd)} printed no JSON; stderr:\n{proc.stderr[-2000:]}")
    out = json.loads(lines[-1])
    out["_stderr"] = proc.stderr
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pick_demos(rows: list[dict[str, Any]], k: int, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The first rows in file order with no label used more than ceil(k / #labels) times.

    The same rule as dspy_side/parse_robustness.py (kept identical on purpose).
    """
    cap = math.ceil(k / len(labels)) if k else 0
    used: collections.Counter[str] = collections.Counter()
    out: list[dict[str, Any]] = []
    for r in rows:
        if len(out) == k:
            break
        if used[r["label"]] < cap:
            used[r["label"]] += 1
            out.append(r)
    return out


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of k successes in n, in percent."""
    if n == 0:
        return [0.0, 0.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, round(100 * (centre - half), 1)), min(100.0, round(100 * (centre + half), 1))]


def spread(values: list[float], digits: int = 4) -> dict[str, float]:
    """min / median / max of a sample, rounded."""
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def git_commit() -> str | None:
    """The checkout's HEAD commit (None outside git)."""
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on (load matters: other jobs share the CPUs)."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": load,
        "oobleck_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def git_state() -> dict[str, Any]:
    """The checkout's HEAD commit and whether the tree had uncommitted changes (None outside git)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def run_record(*, git_at_start: dict[str, Any] | None = None) -> dict[str, Any]:
    """What this process run was: commit (and a dirty tree), command line, load, DSPy in it.

    ``dspy_same_run`` is true only when this process ran the DSPy side itself; rows merged from
    another run's JSON do not count.
    """
    try:
        load_end: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load_end = None
    return {
        "git_at_start": git_at_start if git_at_start is not None else GIT_AT_START,
        "git_at_write": git_state(),
        "command": shlex.join(["python", *sys.argv]),
        "cwd": os.getcwd(),
        "loadavg_at_start": LOAD_AT_START,
        "loadavg_at_end": load_end,
        "dspy_same_run": _DSPY_RUNS > 0,
        "dspy_side_runs": _DSPY_RUNS,
    }


# Taken when a benchmark starts: a commit made while a long run goes on must not be credited
# with the code that ran (the old `machine.oobleck_commit` was taken at write time).
GIT_AT_START: dict[str, Any] = git_state()


def write_result(name: str, result: dict[str, Any], *, quiet: bool = False) -> Path:
    """Print ``result`` as one JSON object and write it to ``results/<name>.json``.

    Adds ``run`` (see run_record): the commit at start and at write time with a dirty flag, the
    exact command line, the load average at start and end, and whether DSPy ran in this process.
    ``quiet``: write the file only (a checkpoint), print nothing.
    ``benchmarks/tables.py`` renders the published tables from these files.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {**result, "run": run_record()}
    text = json.dumps(result, indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
    if not quiet:
        print(json.dumps(result, sort_keys=True))
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return path
