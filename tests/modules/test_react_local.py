"""ReAct on the real embedded model (SmolLM2-135M, llama.cpp grammar): every action parses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oobleck import ReAct, trace
from oobleck.modules.react import StepPredict

CORPUS = [
    "The Eiffel Tower is in Paris and is 330 metres tall.",
    "Marie Curie was born in 1867 in Warsaw.",
    "The river Nile is 6650 kilometres long.",
]


def search(query: str) -> str:
    """Search the encyclopedia for sentences sharing words with the query.

    Args:
        query: a few words naming what to look up.
    """
    words = {w.strip("?.,").lower() for w in query.split()}
    return "\n".join(s for s in CORPUS if words & {w.strip(".,").lower() for w in s.split()}) or "No results."


def calculate(expression: str) -> str:
    """Compute an arithmetic expression such as 330 * 2.

    Args:
        expression: digits and + - * / only.
    """
    if not set(expression) <= set("0123456789+-*/. ()"):
        raise ValueError("only digits and + - * / are allowed")
    return str(eval(expression, {"__builtins__": {}}))  # noqa: S307 - checked to arithmetic above


QUESTIONS = [
    "How tall is the Eiffel Tower in metres?",
    "In which city was Marie Curie born?",
    "What is twice the length of the Nile in kilometres?",
]


@pytest.mark.slow
@pytest.mark.parametrize("tool_first", [False, True])
def test_every_action_parses_on_the_embedded_model(local_lm: Any, tool_first: bool) -> None:
    agent = ReAct("question -> answer", tools=[search, calculate], max_iters=3, tool_first=tool_first, lm=local_lm)
    agent.extract.config["max_tokens"] = 32
    steps = calls = 0
    with trace() as t:
        for question in QUESTIONS:
            out = agent(question=question)
            assert out.trajectory and all(s["tool"] is not None for s in out.trajectory), out.trajectory
            steps += len(out.trajectory)
            calls += sum(s["tool"] in ("search", "calculate") for s in out.trajectory)
    step_entries = [e for e in t.entries if isinstance(e.predictor, StepPredict)]
    assert len(step_entries) == steps
    for entry in step_entries:  # every raw completion is one valid action, no repair needed
        assert entry.error is None and entry.usage.retries == 0
        action = json.loads(entry.raw)["next_action"]
        assert action["tool"] in ("search", "calculate", "finish")
        if action["tool"] != "finish":
            assert set(action["args"]) == {"query"} if action["tool"] == "search" else {"expression"}
    if tool_first:
        assert calls >= len(QUESTIONS)  # the first step of each question called a tool
