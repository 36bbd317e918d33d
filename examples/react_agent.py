"""An agent that looks things up and calculates: ReAct with two tools on the embedded model.

The agent answers questions about a small encyclopedia kept in this file. Each step it writes
a thought and one action: a ``search`` of the encyclopedia, a ``calculate`` of an arithmetic
expression, or ``finish``. On LocalLM the action is constrained by a grammar built from the
tools' argument schemas, so every action the 135M model writes is a known tool with valid
arguments; the script counts the steps whose action could not be read (always 0 here).

It runs the agent with two hand-written demo trajectories (a user's few-shot examples), shows
one trajectory, saves the agent (tools by name and schema, never code) and loads it back with
``oobleck.load(path, tools=[search, calculate])``.

Run it with ``python examples/react_agent.py`` inside the venv (``--quick`` for a few questions).
"""

from __future__ import annotations

import argparse
import ast
import operator
import sys
from pathlib import Path
from typing import Annotated

import pydantic

import oobleck
from oobleck import Cache, CachedLM, Example, LocalLM, ReAct, Tool
from oobleck.modules.react import NO_STEPS, format_trajectory

HERE = Path(__file__).resolve().parent

CORPUS = [
    "The Eiffel Tower is in Paris and is 330 metres tall.",
    "The Statue of Liberty is in New York and is 93 metres tall.",
    "Mount Everest is 8849 metres high, the highest mountain on Earth.",
    "The river Nile is 6650 kilometres long.",
    "The Amazon river is 6400 kilometres long.",
    "Ada Lovelace was born in 1815 in London.",
    "Alan Turing was born in 1912 in London.",
    "Marie Curie was born in 1867 in Warsaw.",
]

QUESTIONS = [
    ("How tall is the Statue of Liberty in metres?", "93"),
    ("In which city was Marie Curie born?", "Warsaw"),
    ("How long is the Nile in kilometres?", "6650"),
    ("In which year was Alan Turing born?", "1912"),
    ("How high is Mount Everest in metres?", "8849"),
    ("In which city was Ada Lovelace born?", "London"),
]


def search(query: Annotated[str, pydantic.Field(max_length=60)]) -> str:
    """Search the encyclopedia and return the two best matching sentences.

    Args:
        query: a few words naming what to look up.
    """
    words = {w.strip("?.,").lower() for w in query.split() if len(w) > 2}
    scored = sorted(CORPUS, key=lambda s: -len(words & {w.strip(".,").lower() for w in s.split()}))
    hits = [s for s in scored[:2] if words & {w.strip(".,").lower() for w in s.split()}]
    return "\n".join(hits) or "No results."


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def calculate(expression: str) -> float:
    """Compute an arithmetic expression with + - * / and parentheses, e.g. (330 - 93) * 2.

    Args:
        expression: the arithmetic expression.
    """

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](value(node.left), value(node.right)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise ValueError(f"only numbers and + - * / are allowed, got {ast.unparse(node)!r}")

    return value(ast.parse(expression, mode="eval").body)


def demos() -> list[Example]:
    """Two demo steps from a hand-written trajectory: a search, then finish."""
    question = "How tall is the Eiffel Tower in metres?"
    step1 = {
        "thought": "I should search the encyclopedia for the Eiffel Tower.",
        "tool": "search",
        "args": {"query": "Eiffel Tower tall"},
        "observation": search("Eiffel Tower tall"),
    }
    return [
        Example(
            question=question,
            trajectory=NO_STEPS,
            next_thought=step1["thought"],
            next_action={"tool": "search", "args": step1["args"]},
        ).with_inputs("question", "trajectory"),
        Example(
            question=question,
            trajectory=format_trajectory([step1]),
            next_thought="The search says it is 330 metres tall, so I can finish.",
            next_action={"tool": "finish"},
        ).with_inputs("question", "trajectory"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out" / "react_agent.json"), help="where to write the artifact")
    parser.add_argument("--cache", default=str(HERE / "out" / "cache"), help="LM cache directory")
    parser.add_argument("--quick", action="store_true", help="a few questions only (used by the test suite)")
    args = parser.parse_args(argv)
    questions = QUESTIONS[:3] if args.quick else QUESTIONS

    lm = CachedLM(LocalLM(max_tokens=160), cache=Cache(args.cache))
    tools = [Tool(search, timeout=5), Tool(calculate, timeout=5)]
    task = oobleck.Signature(
        "question -> answer", "Answer the question with a few words. Search first: never answer from memory."
    )
    agent = ReAct(task, tools=tools, max_iters=3, tool_first=True, lm=lm)
    agent.react.demos = demos()
    agent.extract.config["max_tokens"] = 40  # the answer: a few words

    steps = unreadable = correct = 0
    last = None
    for question, expected in questions:
        out = agent(question=question)
        steps += len(out.trajectory)
        unreadable += sum(1 for s in out.trajectory if s["tool"] is None)
        correct += expected.lower() in str(out.answer).lower()
        last = (question, out)
        print(f"{question} -> {str(out.answer).strip()[:40]!r} ({[s['tool'] for s in out.trajectory]})")
    print(f"{correct}/{len(questions)} correct; {steps} steps, {unreadable} with an action that could not be read")
    if last is not None:
        print(f"\nTrajectory for {last[0]!r}:\n{format_trajectory(last[1].trajectory)}")

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    agent.save(out_path)
    loaded = oobleck.load(out_path, tools=tools, lm=lm)
    again = loaded(question=questions[0][0])
    print(f"\nsaved to {out_path} and loaded with tools=[search, calculate]: {str(again.answer).strip()[:40]!r}")
    return 0 if unreadable == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
