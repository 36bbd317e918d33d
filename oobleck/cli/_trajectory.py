"""Agent demos shown readably in ``oobleck inspect``: each step as thought, ``tool(args) -> observation``.

A bootstrapped demo of ReAct's step predictor is one step of a successful run with the
trajectory before it (as :func:`~oobleck.modules.react.format_trajectory` wrote it); a demo of
its extract predictor is a whole trajectory and the answer. This reads the trajectory text back
into steps, drops the demos whose run a longer demo of the same inputs already shows, and writes
one block per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from oobleck import _types

__all__ = ["parse_trajectory", "trajectory_lines"]

#: The longest thought or observation shown (longer ones end with "...").
SHOWN_CHARS = 300

_STEP = re.compile(r"(?:^|\n\n)Step \d+\n")
_BODY = re.compile(
    r"^Thought: (?P<thought>.*?)\n(?:Action: (?P<tool>\S+)(?: (?P<args>.*?))?(?:\nObservation: (?P<obs>.*))?"
    r"|Error: (?P<error>.*))$",
    re.DOTALL,
)


def parse_trajectory(text: str) -> list[dict[str, Any]] | None:
    r"""The steps of a trajectory as ReAct formats it; None when the text is not one.

    Example:
        >>> parse_trajectory('Step 1\nThought: look\nAction: search {"q": "x"}\nObservation: x is 1')
        [{'thought': 'look', 'tool': 'search', 'args': {'q': 'x'}, 'observation': 'x is 1', 'error': None}]
        >>> parse_trajectory("(no steps yet)")
        []
    """
    if text.strip() == "(no steps yet)":
        return []
    blocks = _STEP.split(text)
    if len(blocks) < 2 or blocks[0].strip():
        return None
    steps = []
    for block in blocks[1:]:
        match = _BODY.match(block)
        if match is None:
            return None
        args: Any = {}
        if match["args"]:
            try:
                args = json.loads(match["args"])
            except ValueError:
                args = match["args"]
        steps.append(
            {
                "thought": match["thought"],
                "tool": match["tool"],
                "args": args,
                "observation": match["obs"],
                "error": match["error"],
            }
        )
    return steps


def trajectory_lines(
    name: str, inputs: Sequence[str], outputs: Sequence[str], demos: Sequence[Mapping[str, Any]]
) -> list[str]:
    """``oobleck inspect``'s block for a predictor's agent demos (none if it has no trajectories).

    Args:
        name: the predictor's name.
        inputs: its signature's input field names.
        outputs: its output field names.
        demos: its demos.
    """
    runs: list[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = []
    for demo in demos:
        text = demo.get("trajectory")
        steps = parse_trajectory(text) if isinstance(text, str) else None
        if steps is None:
            continue
        given = {k: demo[k] for k in inputs if k != "trajectory" and k in demo}
        answer = {k: demo[k] for k in outputs if k in demo and k not in ("next_thought", "next_action")}
        if "next_action" in demo:
            action = _types.to_jsonable(demo["next_action"])
            action = action if isinstance(action, dict) else {"tool": str(action)}
            step = {"thought": demo.get("next_thought"), "tool": action.get("tool"), "args": action.get("args")}
            steps = [*steps, step]
        runs.append((given, steps, answer))
    if not runs:
        return []
    # a run is left out when a later one shows it too (an earlier one, for equal runs)
    shown = [
        run
        for i, run in enumerate(runs)
        if not any(
            _extends(other, run) for j, other in enumerate(runs) if j != i and (j > i or not _extends(run, other))
        )
    ]
    out = ["", f"== agent demos of {name}: {len(demos)} demos; {len(shown)} runs, step by step =="]
    for i, (given, steps, answer) in enumerate(shown, start=1):
        head = "  ".join(f"{k}: {_short(v)}" for k, v in given.items())
        out.append(f"run {i}  {head}".rstrip())
        for j, step in enumerate(steps, start=1):
            out.append(f"  {j}. {_short(step.get('thought') or '')}")
            out.append(f"     {_call(step)}")
        for key, value in answer.items():
            out.append(f"  => {key}: {_short(value)}")
    return out


def _same(given: Any, other: Any) -> bool:
    return json.dumps(_types.to_jsonable(given), sort_keys=True, default=str) == json.dumps(
        _types.to_jsonable(other), sort_keys=True, default=str
    )


def _same_step(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """The same thought and call (a demo's action lists default arguments the trajectory omits)."""
    if a.get("thought") != b.get("thought") or a.get("tool") != b.get("tool"):
        return False
    a_args, b_args = a.get("args") or {}, b.get("args") or {}
    if not isinstance(a_args, dict) or not isinstance(b_args, dict):
        return _same(a_args, b_args)
    return all(_same(a_args[k], b_args[k]) for k in a_args.keys() & b_args.keys())


def _extends(longer: tuple[Any, ...], shorter: tuple[Any, ...]) -> bool:
    """Whether ``longer`` shows the run of ``shorter``: more steps, the same answered, or a duplicate."""
    (a_given, a_steps, a_answer), (b_given, b_steps, b_answer) = longer, shorter
    if not _same(a_given, b_given) or len(a_steps) < len(b_steps):
        return False
    if not all(_same_step(x, y) for x, y in zip(a_steps, b_steps)):
        return False
    return len(a_steps) > len(b_steps) or bool(a_answer) or not b_answer


def _call(step: Mapping[str, Any]) -> str:
    tool = step.get("tool")
    if tool is None:
        return f"error: {_short(step.get('error'))}"
    if tool == "finish":
        return "finish"
    args = step.get("args")
    if isinstance(args, dict):
        shown = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    else:
        shown = _short(args)
    call = f"{tool}({shown})"
    if step.get("observation") is not None:
        call += f" -> {_short(step['observation'])}"
    return call


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(_types.to_jsonable(value), ensure_ascii=False)
    text = " ".join(str(text).split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
