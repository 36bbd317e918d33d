"""A compiled agent saved and loaded: tools by name and schema, trajectory demos kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from react_helpers import scripted as _scripted
from react_helpers import search

import oobleck
from oobleck import BestOfN, BootstrapFewShot, Example, FakeLM, ReAct, Refine, Tool, trace
from oobleck.artifact import ArtifactWarning
from oobleck.errors import ArtifactError, ConfigError


def _compiled() -> ReAct:
    rows = [
        Example(question="How tall is the tower?", answer="330").with_inputs("question"),
        Example(question="Where is paris?", answer="France").with_inputs("question"),
    ]
    agent = ReAct("question -> answer", tools=[search], lm=FakeLM(_scripted), max_iters=4, tool_first=True)
    compiled = BootstrapFewShot(
        lambda ex, pred, trace=None: ex.answer == pred.answer, max_bootstrapped_demos=4, max_labeled_demos=0
    ).compile(agent, trainset=rows, seed=0, progress=False)
    assert isinstance(compiled, ReAct)
    return compiled


def test_trajectory_demos_survive_save_and_load(tmp_path: Path) -> None:
    compiled = _compiled()
    path = tmp_path / "agent.json"
    compiled.save(path)
    data = json.loads(path.read_text())
    module = data["program"]
    assert module["type"] == "ReAct" and module["extra"]["max_iters"] == 4 and module["extra"]["tool_first"]
    assert module["extra"]["tools"] == [Tool(search).spec()]
    assert "def search" not in path.read_text()  # never code
    loaded = oobleck.load(path, tools=[search], lm=FakeLM(_scripted))
    program = loaded.program
    assert (
        isinstance(program, ReAct)
        and program.max_iters == 4
        and type(program.react).__name__ == "StepPredict"
        and program.tools["search"].func is search
        and program.tool_first
    )
    before = dict(compiled.named_predictors())["react"]
    after = loaded.predictors["react"]
    assert len(after.demos) == len(before.demos) == 4
    for old, new in zip(before.demos, after.demos, strict=True):
        assert new["trajectory"] == old["trajectory"] and new["next_thought"] == old["next_thought"]
        assert new["next_action"] == old["next_action"].model_dump()
    # the loaded agent renders the same step prompt and runs
    question = {"question": "Where is paris?", "trajectory": "(no steps yet)"}
    assert after.render(**question) == before.render(**question)
    with trace() as t:
        out = loaded(question="How tall is the tower?")
    assert out.answer == "330" and [s["tool"] for s in out.trajectory] == ["search", "finish"]
    assert len(t.entries) == 3


def test_load_refuses_missing_or_different_tools(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    _compiled().save(path)
    with pytest.raises(ArtifactError, match=r"calls the tools \['search'\].*tools=\[search\]"):
        oobleck.load(path)
    with pytest.raises(ArtifactError, match=r"tool\(s\) \['search'\], which were not given"):
        oobleck.load(path, tools=[Tool(search, name="find")])

    def search_v2(query: str, k: int = 1, lang: str = "en") -> list[str]:
        """Search, in a language."""
        return []

    with pytest.raises(ArtifactError, match="tool 'search' does not have the arguments it was saved with"):
        oobleck.load(path, tools=[Tool(search_v2, name="search")])

    def search_typed(query: int, k: int = 1) -> list[str]:
        """Search by number."""
        return []

    with pytest.raises(ArtifactError, match="tool 'search'"):
        oobleck.load(path, tools=[Tool(search_typed, name="search")])


def test_load_into_a_program_binds_its_own_tools(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    _compiled().save(path)
    fresh = ReAct("question -> answer", tools=[search], lm=FakeLM(_scripted))
    fresh.load(path)
    assert len(dict(fresh.named_predictors())["react"].demos) == 4 and fresh.max_iters == 4
    assert fresh(question="Where is paris?").answer == "France"


def test_best_of_n_saves_settings_but_not_the_reward(tmp_path: Path) -> None:
    path = tmp_path / "best.json"
    agent = ReAct("question -> answer", tools=[search], lm=FakeLM(_scripted))

    def reward(inputs: dict[str, Any], pred: Any) -> float:
        return 1.0

    Refine(agent, 3, reward, threshold=0.5).save(path)
    loaded = oobleck.load(path, tools=[search], lm=FakeLM(_scripted)).program
    assert isinstance(loaded, Refine) and (loaded.n, loaded.threshold, loaded.reward_fn) == (3, 0.5, None)
    with pytest.raises(ConfigError, match="reward_fn"):
        loaded(question="Where is paris?")
    loaded.reward_fn = reward
    assert loaded(question="Where is paris?").answer == "France"
    assert isinstance(BestOfN(agent, 2, reward, threshold=1), BestOfN)


@pytest.mark.parametrize("adapter", [oobleck.ChatAdapter(), oobleck.JSONAdapter()])
def test_a_saved_agent_loads_without_a_rendering_warning(tmp_path: Path, adapter: Any) -> None:
    """The render check runs after ReAct bound its tools: the action type is the saved one."""
    import warnings

    agent = ReAct("question -> answer", tools=[Tool(search)])
    for _, p in agent.named_predictors():
        p.adapter = adapter
    agent.save(tmp_path / "agent.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ArtifactWarning)
        loaded = oobleck.load(tmp_path / "agent.json", tools=[Tool(search)], strict=True)
    assert [n for n, _ in loaded.program.named_predictors()] == ["react", "extract"]


def test_a_small_demo_budget_keeps_whole_trajectories_through_save_and_load(tmp_path: Path) -> None:
    """max_bootstrapped_demos counts successful runs: each kept run keeps every step, in order."""
    rows = [
        Example(question="How tall is the tower?", answer="330").with_inputs("question"),
        Example(question="Where is paris?", answer="Spain").with_inputs("question"),  # fails: not a demo
        Example(question="Where is paris?", answer="France").with_inputs("question"),
    ]
    agent = ReAct("question -> answer", tools=[search], lm=FakeLM(_scripted), max_iters=4)
    metric = lambda ex, pred, trace=None: ex.answer == pred.answer  # noqa: E731
    for budget, kept in ((1, ["330"]), (2, ["330", "France"])):
        compiled = BootstrapFewShot(metric, max_bootstrapped_demos=budget, max_labeled_demos=0).compile(
            agent, trainset=rows, seed=0, progress=False
        )
        compiled.save(tmp_path / "agent.json")
        loaded = oobleck.load(tmp_path / "agent.json", tools=[search], lm=FakeLM(_scripted))
        for program, react, extract in (
            (compiled, dict(compiled.named_predictors())["react"], dict(compiled.named_predictors())["extract"]),
            (loaded, loaded.predictors["react"], loaded.predictors["extract"]),
        ):
            assert [d["answer"] for d in extract.demos] == kept, program
            actions = [_tool(d["next_action"]) for d in react.demos]
            assert actions == ["search", "finish"] * len(kept)  # every run whole: its search, then its finish
            for start, finish in zip(react.demos[::2], react.demos[1::2], strict=True):
                assert start["trajectory"] == "(no steps yet)" and start["question"] == finish["question"]
                assert "Action: search" in finish["trajectory"] and "Observation:" in finish["trajectory"]


def _tool(action: Any) -> str:
    return str(action["tool"] if isinstance(action, dict) else action.tool)
