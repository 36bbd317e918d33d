"""`--tools`: an agent's tools given to `oobleck serve` / `run` at start-up (artifacts store no code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from react_helpers import act, finish, search
from watchdog import serving

import oobleck.serve
from oobleck import FakeLM, ReAct, context
from oobleck.cli import main
from oobleck.serve import make_server

TOOLS_FILE = '''
def search(query: str, k: int = 1) -> list[str]:
    """Search the encyclopedia.

    Args:
        query: words to look for.
        k: how many passages.
    """
    facts = {"paris": "Paris is the capital of France."}
    return [f"[{query}] " + t for key, t in facts.items() if key in query.lower().split()][:k]

tools = [search]
not_a_tool = 42
'''


@pytest.fixture
def agent(tmp_path: Path) -> tuple[Path, Path]:
    ReAct("question -> answer", tools=[search]).save(tmp_path / "agent.json")
    (tmp_path / "my_tools.py").write_text(TOOLS_FILE)
    return tmp_path / "agent.json", tmp_path / "my_tools.py"


def _lm() -> FakeLM:
    return FakeLM([act("search", query="paris"), finish(), {"answer": "France"}])


def test_serve_binds_the_tools_given_at_start_up(agent, monkeypatch: pytest.MonkeyPatch) -> None:
    import http.client

    art_path, tools_path = agent
    seen: list[dict[str, object]] = []

    def fake_serve(art, **kwargs):  # the real server, on a free port, for one request
        with serving(make_server(art, port=0)) as address:
            conn = http.client.HTTPConnection(*address, timeout=10)
            conn.request("POST", "/", body=json.dumps({"question": "Where is Paris?"}))
            seen.append(json.loads(conn.getresponse().read()))
            conn.close()

    monkeypatch.setattr(oobleck.serve, "serve", fake_serve)
    with context(lm=_lm()):
        code = main(["serve", str(art_path), "--port", "0", "--tools", str(tools_path)])
    assert code == 0
    body = seen[0]
    assert body["answer"] == "France"
    # the observation came from the file's search (it tags its results), not the test's own
    assert body["trajectory"][0]["observation"] == '["[paris] Paris is the capital of France."]'  # type: ignore[index]


def test_run_takes_tools_too_and_refuses_an_agent_without_them(agent, capsys) -> None:
    art_path, tools_path = agent
    with context(lm=_lm()):
        code = main(["run", str(art_path), '{"question": "Where is Paris?"}', "--tools", f"{tools_path}:tools"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["answer"] == "France"
    with context(lm=_lm()):
        code = main(["run", str(art_path), '{"question": "q"}'])
    _, err = capsys.readouterr()
    assert code == 1 and "search" in err and "tools" in err
    with context(lm=_lm()):
        code = main(["run", str(art_path), '{"question": "q"}', "--tools", f"{tools_path}:not_a_tool"])
    _, err = capsys.readouterr()
    assert code == 1 and "expected functions" in err and "int" in err


def _compiled_agent(tmp_path: Path, adapter=None) -> Path:
    from react_helpers import scripted

    from oobleck import BootstrapFewShot, Example

    rows = [
        Example(question="How tall is the tower?", answer="330").with_inputs("question"),
        Example(question="Where is paris?", answer="France").with_inputs("question"),
    ]
    agent = ReAct("question -> answer", tools=[search], lm=FakeLM(scripted), max_iters=4, adapter=adapter)
    compiled = BootstrapFewShot(
        lambda ex, pred, trace=None: ex.answer == pred.answer, max_bootstrapped_demos=4, max_labeled_demos=0
    ).compile(agent, trainset=rows, seed=0, progress=False)
    compiled.save(tmp_path / "compiled.json")
    return tmp_path / "compiled.json"


@pytest.mark.parametrize("adapter", ["chat", "json"])
def test_inspect_shows_trajectory_demos_step_by_step_without_the_tools(tmp_path: Path, capsys, adapter) -> None:
    from oobleck import JSONAdapter

    path = _compiled_agent(tmp_path, adapter=JSONAdapter() if adapter == "json" else None)
    code = main(["inspect", str(path)])  # no --tools: the agent is read, not run
    out, err = capsys.readouterr()
    assert code == 0, err
    react_block = out.split("== agent demos of react: ")[1].split("--- system ---")[0]
    # four step demos are two runs; each step shows its thought and call -> observation
    assert react_block.startswith("4 demos; 2 runs, step by step ==")
    assert "run 1  question: How tall is the tower?" in react_block
    assert '     search(query="tower") -> ["The Eiffel Tower is 330 metres tall."]' in react_block
    assert react_block.count("     finish") == 2
    extract_block = out.split("== agent demos of extract: ")[1]
    assert '     search(query="paris") -> ["Paris is the capital of France."]\n' in extract_block
    assert "  => answer: France" in extract_block


def test_an_agent_read_without_tools_cannot_run_them(tmp_path: Path) -> None:
    from oobleck._tool_schema import placeholders
    from oobleck.artifact import load

    path = _compiled_agent(tmp_path)
    with placeholders():
        art = load(path)
    tool = art.program.tools["search"]
    assert tool.args_schema == ReAct("q -> a", tools=[search]).tools["search"].args_schema
    result = tool.run({"query": "paris"})
    assert result.error is not None and "not bound" in result.error


def test_tools_from_an_mcp_server_named_in_a_file(tmp_path: Path, capsys) -> None:
    pytest.importorskip("mcp")
    import sys

    server_script = Path(__file__).parents[1] / "fixtures" / "mcp_server.py"
    (tmp_path / "mcp_tools.py").write_text(
        f"import oobleck\nserver = oobleck.MCPServer(command=[{sys.executable!r}, {str(server_script)!r}])\n"
    )
    from oobleck import MCPServer

    with MCPServer(command=[sys.executable, str(server_script)]) as server:
        ReAct("question -> answer", tools=server.tools(["add"])).save(tmp_path / "adder.json")
    lm = FakeLM([act("add", a=2, b=3), finish(), {"answer": "5"}])
    with context(lm=lm):
        code = main(
            ["run", str(tmp_path / "adder.json"), '{"question": "2+3?"}', "--tools", f"{tmp_path}/mcp_tools.py:server"]
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["trajectory"][0]["observation"] == "5"
