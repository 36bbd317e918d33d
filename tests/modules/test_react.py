"""ReAct with FakeLM: the loop, constrained actions per backend, failures, limits, compiling."""

from __future__ import annotations

import asyncio
import datetime
import json
import time

import pydantic
import pytest
from react_helpers import FACTS, act, calculate, finish, search
from react_helpers import scripted as _scripted

from oobleck import BootstrapFewShot, Capabilities, Example, FakeLM, ReAct, Tool, context, trace
from oobleck._budget import Budget
from oobleck.errors import BudgetExceededError, ConfigError, InputError
from oobleck.lm.types import LMRequest


def test_the_loop_calls_tools_and_extracts_the_answer() -> None:
    lm = FakeLM([act("search", query="tower"), act("calculate", expression="330*2"), finish(), {"answer": "660"}])
    agent = ReAct("question -> answer", tools=[search, calculate], lm=lm)
    with trace() as t:
        out = agent(question="Twice the tower's height?")
    assert out.answer == "660"
    assert [(s["tool"], s["args"], s["observation"], s["error"]) for s in out.trajectory] == [
        ("search", {"query": "tower"}, '["The Eiffel Tower is 330 metres tall."]', None),
        ("calculate", {"expression": "330*2"}, "660.0", None),
        ("finish", {}, None, None),
    ]
    assert all(s["seconds"] >= 0 for s in out.trajectory)
    names = {id(p): n for n, p in agent.named_predictors()}
    assert [names[id(e.predictor)] for e in t.entries] == ["react", "react", "react", "extract"]
    assert [n for n, _ in agent.named_predictors()] == ["react", "extract"]
    # each step sees the trajectory so far; the last sees the whole of it
    last = t.entries[2].inputs["trajectory"]
    assert "Action: calculate" in last and "Observation: 660.0" in last
    assert t.entries[0].inputs["trajectory"] == "(no steps yet)"
    assert t.entries[3].inputs["trajectory"].endswith("Action: finish")
    assert out.usage.calls == 4


def test_async_forward_runs_async_tools() -> None:
    async def lookup(key: str) -> str:
        """Look a key up."""
        await asyncio.sleep(0)
        return FACTS.get(key, "none")

    lm = FakeLM([act("lookup", key="paris"), finish(), {"answer": "France"}])
    out = asyncio.run(ReAct("question -> answer", tools=[lookup], lm=lm).acall(question="Where is Paris?"))
    assert out.answer == "France" and out.trajectory[0]["observation"] == "Paris is the capital of France."


def test_a_structured_backend_gets_the_action_union_as_response_format() -> None:
    lm = FakeLM([finish(), {"answer": "x"}], capabilities=Capabilities(json_schema=True))
    ReAct("question -> answer", tools=[search, calculate], lm=lm)(question="q")
    fmt = lm.requests[0].response_format
    assert fmt is not None
    schema = fmt["schema"]
    assert schema["required"] == ["next_thought", "next_action"] and schema["additionalProperties"] is False
    members = schema["properties"]["next_action"]["anyOf"]
    defs = schema["$defs"]
    resolved = [defs[m["$ref"].rsplit("/", 1)[-1]] for m in members]
    assert [m["properties"]["tool"]["const"] for m in resolved] == ["search", "calculate", "finish"]
    assert schema["properties"]["next_thought"]["maxLength"] == 200  # the action is never cut off
    search_args = defs[resolved[0]["properties"]["args"]["$ref"].rsplit("/", 1)[-1]]
    assert search_args["properties"]["query"]["type"] == "string" and search_args["required"] == ["query"]
    assert search_args["properties"]["query"]["maxLength"] == 200  # bounded in the grammar only
    assert all(m["additionalProperties"] is False for m in resolved)
    assert lm.requests[0].max_tokens == 512 and lm.requests[1].max_tokens is None
    # the answer step is constrained to the task's outputs
    assert list(lm.requests[1].response_format["schema"]["properties"]) == ["answer"]


def test_tool_first_offers_no_finish_on_the_first_constrained_step() -> None:
    lm = FakeLM(
        [act("search", query="paris"), finish(), {"answer": "France"}], capabilities=Capabilities(json_schema=True)
    )
    out = ReAct("question -> answer", tools=[search], tool_first=True, lm=lm)(question="Where is paris?")
    assert out.answer == "France"

    def offered(request: LMRequest) -> list[str]:
        schema = request.response_format["schema"]
        refs = [m["$ref"].rsplit("/", 1)[-1] for m in schema["properties"]["next_action"]["anyOf"]]
        return [schema["$defs"][r]["properties"]["tool"]["const"] for r in refs]

    assert offered(lm.requests[0]) == ["search"] and offered(lm.requests[1]) == ["search", "finish"]


def test_a_plain_chat_backend_gets_no_schema_and_repairs_a_bad_action() -> None:
    bad = '[[ ## next_thought ## ]]\nhm\n\n[[ ## next_action ## ]]\n{"tool": "google", "args": {}}'
    lm = FakeLM([bad, act("search", query="paris"), finish(), {"answer": "France"}])
    out = ReAct("question -> answer", tools=[search], lm=lm, max_retries=1)(question="Where is Paris?")
    assert all(r.response_format is None for r in lm.requests)
    assert "could not be read" in lm.requests[1].messages[-1].content
    assert out.trajectory[0]["tool"] == "search" and out.answer == "France"


def test_an_unreadable_action_ends_the_loop_with_an_error_step() -> None:
    lm = FakeLM(["no markers at all", {"answer": "unknown"}])
    out = ReAct("question -> answer", tools=[search], lm=lm)(question="q")
    assert out.trajectory[0]["tool"] is None and out.trajectory[0]["error"].startswith("the next action could not")
    assert out.answer == "unknown"


def test_failing_tools_are_observations() -> None:
    def broken(x: int) -> int:
        """Fails."""
        raise RuntimeError("disk on fire")

    def hang() -> str:
        """Hangs."""
        time.sleep(5)
        return "late"

    def huge() -> str:
        """A megabyte."""
        return "y" * 1_000_000

    tools = [broken, Tool(hang, timeout=0.2), Tool(huge, max_chars=50)]
    lm = FakeLM([act("broken", x=1), act("hang"), act("huge"), finish(), {"answer": "?"}])
    started = time.perf_counter()
    out = ReAct("question -> answer", tools=tools, lm=lm)(question="q")
    assert time.perf_counter() - started < 3
    errors = [s["error"] for s in out.trajectory[:3]]
    assert errors[0] == "tool 'broken' raised RuntimeError: disk on fire"
    assert errors[1] == "tool 'hang' timed out after 0.2 s"
    assert errors[2] is None and out.trajectory[2]["observation"].endswith(
        "[... truncated: 999950 of 1000000 characters cut]"
    )
    assert out.answer == "?" and out.trajectory[3]["tool"] == "finish"
    assert "Observation: Error: tool 'broken' raised" in lm.requests[1].messages[-1].content


def test_max_iters_bounds_the_loop() -> None:
    lm = FakeLM([act("search", query="paris")], cycle=True)
    agent = ReAct("question -> answer", tools=[search], lm=lm, max_iters=3)
    lm_answers = FakeLM([{"answer": "France"}])
    agent.extract.lm = lm_answers
    out = agent(question="q")
    assert len(out.trajectory) == 3 and len(lm.requests) == 3 and out.answer == "France"
    assert all(s["tool"] == "search" for s in out.trajectory)


def test_the_budget_stops_the_loop_and_propagates() -> None:
    lm = FakeLM([act("search", query="paris")], cycle=True)
    agent = ReAct("question -> answer", tools=[search], lm=lm, max_iters=10)
    budget = Budget(max_lm_calls=2)
    with budget.activate(), pytest.raises(BudgetExceededError):
        agent(question="q")
    assert len(lm.requests) == 2


def test_bad_configurations() -> None:
    with pytest.raises(ConfigError, match="at least one tool"):
        ReAct("question -> answer", tools=[])
    with pytest.raises(ConfigError, match="two tools"):
        ReAct("question -> answer", tools=[search, Tool(calculate, name="search")])
    with pytest.raises(ConfigError, match="max_iters"):
        ReAct("question -> answer", tools=[search], max_iters=0)
    with pytest.raises(ConfigError, match="trajectory"):
        ReAct("question, trajectory -> answer", tools=[search])
    with pytest.raises(InputError, match="question"):
        ReAct("question -> answer", tools=[search], lm=FakeLM())(query="x")


def test_render_calls_dry_run() -> None:
    calls = ReAct("question -> answer", tools=[search], lm=FakeLM()).render_calls(question="q")
    assert [c.predictor for c in calls] == ["react", "extract"]
    assert "search: Search the encyclopedia." in calls[0].messages[0].content


def test_bootstrap_compiles_an_agent_with_trajectory_demos() -> None:
    rows = [
        Example(question="How tall is the tower?", answer="330").with_inputs("question"),
        Example(question="Where is paris?", answer="France").with_inputs("question"),
    ]
    agent = ReAct("question -> answer", tools=[search], lm=FakeLM(_scripted))
    compiled = BootstrapFewShot(
        lambda ex, pred, trace=None: ex.answer == pred.answer, max_bootstrapped_demos=4, max_labeled_demos=0
    ).compile(agent, trainset=rows, seed=0, progress=False)
    react = dict(compiled.named_predictors())["react"]
    assert len(react.demos) == 4
    finishing = [d for d in react.demos if d["next_action"].tool == "finish"]
    assert len(finishing) == 2 and all("Observation:" in d["trajectory"] for d in finishing)
    assert all(d["trajectory"].count("Step 1") == 1 for d in finishing)
    extract = dict(compiled.named_predictors())["extract"]
    assert [d["answer"] for d in extract.demos] == ["330", "France"]
    # the compiled agent shows its demos' actions as JSON in the step prompt
    with context(lm=FakeLM(_scripted)), trace() as t:
        assert compiled(question="Where is paris?").answer == "France"
    demo_text = " ".join(m.content for m in t.entries[0].messages)
    assert '{"tool": "search", "args": {"query": "tower", "k": 1}}' in demo_text


class _Item(pydantic.BaseModel):
    item_name: str = pydantic.Field(alias="itemName")


def test_arguments_of_any_json_type_survive_the_trajectory() -> None:
    def days_until(day: datetime.date, tags: set[str] | None = None) -> int:
        """Days from 2024-01-01 to a date."""
        return (day - datetime.date(2024, 1, 1)).days

    def stock(item: _Item) -> str:
        """Stock of an item (its schema uses the alias itemName)."""
        return f"{item.item_name}: 3"

    lm = FakeLM(
        [
            act("days_until", day="2024-01-11", tags=["a"]),
            act("stock", item={"itemName": "bolt"}),
            finish(),
            {"answer": "10"},
        ],
        capabilities=Capabilities(json_schema=True),
    )
    out = ReAct("question -> answer", tools=[days_until, stock], lm=lm)(question="How many days?")
    assert [(s["tool"], s["observation"], s["error"]) for s in out.trajectory] == [
        ("days_until", "10", None),
        ("stock", "bolt: 3", None),
        ("finish", None, None),
    ]
    # the trajectory is JSON (it is saved with the prediction) and shows the arguments as the schema names them
    assert out.trajectory[0]["args"] == {"day": "2024-01-11", "tags": ["a"]}
    assert out.trajectory[1]["args"] == {"item": {"itemName": "bolt"}}
    json.dumps(out.trajectory)
    tool = Tool(stock)
    assert tool.run(tool.args_model.model_validate({"item": {"itemName": "nut"}})).observation == "nut: 3"
    assert 'Action: stock {"item": {"itemName": "bolt"}}' in lm.requests[3].messages[-1].content
