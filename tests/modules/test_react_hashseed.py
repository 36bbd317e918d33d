"""A ReAct prompt does not depend on the process's string hashing (``PYTHONHASHSEED``).

A tool argument typed as a set, and a tool that returns a set, would otherwise appear in the
trajectory in hash order: the same run would send different prompts (and miss the cache) in
another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import oobleck

SCRIPT = textwrap.dedent(
    """
    import json

    from oobleck import Capabilities, FakeLM, ReAct

    WORDS = ["pear", "apple", "fig", "kiwi", "plum", "lime", "date", "yuzu", "sloe", "nectarine"]

    def pick(fruits: set[str]) -> set[str]:
        '''Keep the fruits with four letters.'''
        return {f for f in fruits if len(f) == 4}

    for caps in (Capabilities(), Capabilities(json_schema=True)):
        lm = FakeLM(
            [
                {"next_thought": "t", "next_action": {"tool": "pick", "args": {"fruits": WORDS}}},
                {"next_thought": "done", "next_action": {"tool": "finish"}},
                {"answer": "ok"},
            ],
            capabilities=caps,
        )
        out = ReAct("question -> answer", tools=[pick], lm=lm)(question="which?")
        print(json.dumps({"prompt": lm.requests[-1].messages[-1].content, "steps": out.trajectory[0]["args"]}))
    """
)


def _run(seed: str) -> list[dict[str, object]]:
    root = Path(oobleck.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_set_argument_and_a_set_result_render_the_same_in_every_process() -> None:
    first, second = _run("1"), _run("2")
    assert len(first) == 2
    for a, b in zip(first, second, strict=True):
        assert "Action: pick" in str(a["prompt"]) and "Observation:" in str(a["prompt"])
        assert a == b
