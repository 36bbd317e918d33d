"""Tool: schema from annotations, validation, timeouts, huge and failing results."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Literal, Optional

import pydantic
import pytest

from oobleck import Tool
from oobleck.errors import BudgetExceededError, ConfigError


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


def lookup(
    query: str,
    k: int = 3,
    mode: Literal["exact", "fuzzy"] = "exact",
    near: Optional[Point] = None,
    tags: list[str] | None = None,
    weights: dict[str, float] | None = None,
) -> dict[str, object]:
    """Look things up in the catalogue.

    Longer notes that are not part of the description.

    Args:
        query: the words to find,
            possibly several.
        k (int): how many results.
        mode: how to match.

    Returns:
        The matches.
    """
    return {"query": query, "k": k, "mode": mode, "near": near.x if near else None}


def test_schema_from_annotations_and_docstring() -> None:
    tool = Tool(lookup)
    schema = tool.args_schema
    props = schema["properties"]
    assert tool.name == "lookup" and tool.description == "Look things up in the catalogue."
    assert schema["required"] == ["query"] and schema["additionalProperties"] is False
    assert props["query"]["description"] == "the words to find, possibly several."
    assert props["k"] == {"default": 3, "description": "how many results.", "title": "K", "type": "integer"}
    assert props["mode"]["enum"] == ["exact", "fuzzy"] and props["mode"]["default"] == "exact"
    assert {"$ref": "#/$defs/Point"} in props["near"]["anyOf"] and {"type": "null"} in props["near"]["anyOf"]
    assert schema["$defs"]["Point"]["required"] == ["x"]
    assert props["tags"]["anyOf"][0] == {"items": {"type": "string"}, "type": "array"}
    assert props["weights"]["anyOf"][0]["additionalProperties"] == {"type": "number"}
    assert tool.spec() == {"name": "lookup", "description": tool.description, "args": schema}


def test_arguments_are_validated_and_converted() -> None:
    tool = Tool(lookup)
    out = tool.run({"query": "cats", "k": "2", "near": {"x": 5}})
    assert out.error is None and out.observation == '{"query": "cats", "k": 2, "mode": "exact", "near": 5}'
    bad = tool.run({"query": "cats", "mode": "loose", "extra": 1})
    assert bad.observation.startswith("Error: invalid arguments for tool 'lookup': mode: ")
    assert "extra: Extra inputs are not permitted" in bad.error
    assert "expected arguments:" in bad.observation
    assert Tool(lookup).run(None).error.startswith("invalid arguments for tool 'lookup': query: Field required")


def test_results_become_text() -> None:
    def model() -> Point:
        """A point."""
        return Point(x=1)

    def obj() -> object:
        """An object."""
        return complex(1, 2)

    def fruits() -> set[str]:
        """A set (as a sorted JSON list: a set's own order changes per process)."""
        return {"pear", "fig", "apple"}

    def nothing() -> None:
        """Nothing."""

    assert Tool(model).run({}).observation == '{"x":1,"y":0}'
    assert Tool(obj).run({}).observation == "(1+2j)"
    assert Tool(fruits).run({}).observation == '["apple", "fig", "pear"]'
    assert Tool(nothing).run({}).observation == "null"


def test_async_tools() -> None:
    async def fetch(url: str, retries: int = 1) -> str:
        """Fetch a page."""
        await asyncio.sleep(0)
        return f"{url} x{retries}"

    tool = Tool(fetch)
    assert tool.is_async and tool.args_schema["required"] == ["url"]
    assert tool.run({"url": "a"}).observation == "a x1"  # from sync code: its own loop
    assert asyncio.run(tool.arun({"url": "b", "retries": 2})).observation == "b x2"


def test_a_tool_that_raises_is_an_observation() -> None:
    def broken(x: int) -> int:
        """Always fails."""
        raise ValueError(f"bad {x}")

    out = Tool(broken).run({"x": 1})
    assert out.observation == "Error: tool 'broken' raised ValueError: bad 1" and out.error
    assert asyncio.run(Tool(broken).arun({"x": 2})).error == "tool 'broken' raised ValueError: bad 2"


def test_a_hanging_tool_times_out() -> None:
    def hang(seconds: float) -> str:
        """Sleeps."""
        time.sleep(seconds)
        return "woke"

    async def ahang(seconds: float) -> str:
        """Sleeps asynchronously."""
        await asyncio.sleep(seconds)
        return "woke"

    for fn in (hang, ahang):
        tool = Tool(fn, timeout=0.2)
        started = time.perf_counter()
        out = tool.run({"seconds": 5})
        assert out.error == f"tool {fn.__name__!r} timed out after 0.2 s" and time.perf_counter() - started < 2
        out = asyncio.run(tool.arun({"seconds": 5}))
        assert out.error == f"tool {fn.__name__!r} timed out after 0.2 s" and out.seconds < 2
        assert tool.run({"seconds": 0}).observation == "woke"


def test_a_huge_result_is_cut_with_a_note() -> None:
    def dump() -> str:
        """One megabyte."""
        return "x" * 1_000_000

    out = Tool(dump, max_chars=100).run({})
    assert out.truncated == 999_900 and out.observation.startswith("x" * 100)
    assert out.observation.endswith("[... truncated: 999900 of 1000000 characters cut]")
    assert len(out.observation) < 200


def test_budget_errors_propagate() -> None:
    def spends() -> str:
        """Calls an LM past the budget."""
        raise BudgetExceededError("no more calls")

    with pytest.raises(BudgetExceededError):
        Tool(spends).run({})
    with pytest.raises(BudgetExceededError):
        asyncio.run(Tool(spends).arun({}))


def test_bad_tools_are_refused() -> None:
    def star(*args: int) -> int:
        """Varargs."""
        return 0

    with pytest.raises(ConfigError, match="named parameters"):
        Tool(star)
    with pytest.raises(ConfigError, match="tool name"):
        Tool(lambda: 1)
    with pytest.raises(ConfigError, match="'finish'"):
        Tool(lookup, name="finish")
    with pytest.raises(ConfigError, match="timeout"):
        Tool(lookup, timeout=0)


def test_a_tool_raising_its_own_timeout_error_is_an_observation_not_a_timeout() -> None:
    def fetch(url: str) -> str:
        """A socket that times out (TimeoutError raised by the tool itself)."""
        raise TimeoutError(f"socket to {url} timed out")

    for timeout in (None, 5.0):
        tool = Tool(fetch, timeout=timeout)
        for out in (tool.run({"url": "x"}), asyncio.run(tool.arun({"url": "x"}))):
            assert out.error == "tool 'fetch' raised TimeoutError: socket to x timed out", (timeout, out)


def test_arguments_that_are_not_an_object_are_an_observation() -> None:
    def add(a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    tool = Tool(add)
    for bad in ([1, 2], "a=1", 5):
        for out in (tool.run(bad), asyncio.run(tool.arun(bad))):  # type: ignore[arg-type]
            assert out.error is not None and out.error.startswith("invalid arguments for tool 'add'"), (bad, out)
    assert tool.run(None).error is not None and tool.run({}).error is not None  # a is required


def test_a_sync_callable_returning_a_coroutine_is_awaited_in_arun() -> None:
    async def scale(x: int, factor: int) -> int:
        await asyncio.sleep(0)
        return x * factor

    tool = Tool(functools.partial(scale, factor=3), name="triple")
    assert tool.run({"x": 2}).observation == "6"
    out = asyncio.run(tool.arun({"x": 2}))
    assert out.observation == "6" and out.error is None


def test_a_tool_that_exits_is_an_observation_not_the_end_of_the_program() -> None:
    import argparse

    def cli(argv: list[str]) -> str:
        """A command-line main: argparse exits on arguments it cannot read."""
        parser = argparse.ArgumentParser(prog="cli", exit_on_error=False)
        parser.add_argument("--n", type=int, required=True)
        return str(parser.parse_args(argv).n)

    async def aquit(code: int) -> str:
        """Exits."""
        raise SystemExit(code)

    tool = Tool(cli)
    assert tool.run({"argv": ["--n", "3"]}).observation == "3"
    for out in (tool.run({"argv": []}), asyncio.run(tool.arun({"argv": []}))):
        assert out.error == "tool 'cli' raised SystemExit: 2", out
    for out in (Tool(aquit).run({"code": 4}), asyncio.run(Tool(aquit).arun({"code": 4}))):
        assert out.error == "tool 'aquit' raised SystemExit: 4", out


def test_wrapping_a_tool_keeps_its_name_description_and_schema() -> None:
    renamed = Tool(lookup, name="catalogue", description="Find products.", timeout=2.0, max_chars=50)
    again = Tool(renamed)
    assert (again.name, again.description, again.args_schema) == ("catalogue", "Find products.", renamed.args_schema)
    assert (again.timeout, again.max_chars) == (2.0, 50)
    assert again.run({"query": "x", "k": 1}).observation == renamed.run({"query": "x", "k": 1}).observation
    # what is given replaces what is kept; the wrapped tool is not changed
    other = Tool(renamed, name="shop", description="Search the shop.", timeout=None)
    assert (other.name, other.description, other.timeout, other.max_chars) == ("shop", "Search the shop.", None, 50)
    assert (renamed.name, renamed.description, renamed.timeout) == ("catalogue", "Find products.", 2.0)
    with pytest.raises(ConfigError, match="tool name"):
        Tool(renamed, name="finish")


def test_wrapping_a_schema_tool_keeps_its_schema_and_call() -> None:
    from oobleck._tool_schema import SchemaTool

    calls: list[dict[str, object]] = []

    def call(**arguments: object) -> str:
        calls.append(arguments)
        return "ok"

    schema = {"type": "object", "properties": {"from": {"type": "string"}}, "required": ["from"]}
    remote = SchemaTool(call, name="files.read", description="Read a file.", schema=schema)
    wrapped = Tool(remote, name="read")
    assert (wrapped.name, wrapped.description, wrapped.args_schema) == ("read", "Read a file.", remote.args_schema)
    assert wrapped.run({"from": "a.txt"}).observation == "ok" and calls == [{"from": "a.txt"}]
    assert remote.name == "files_read"
