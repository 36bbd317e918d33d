"""Tools from a real MCP server (the test fixture's, run by the ``mcp`` package) called by ReAct."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from react_helpers import act, finish

import oobleck
from oobleck import Capabilities, FakeLM, MCPServer, ReAct, Tool, mcp_tools
from oobleck._tool_schema import schema_model
from oobleck.errors import ConfigError, ToolError
from oobleck.tool_mcp import MCPTool

pytest.importorskip("mcp")

SERVER = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_server.py"


@pytest.fixture(scope="module")
def server() -> Iterator[MCPServer]:
    with MCPServer(command=[sys.executable, str(SERVER)], timeout=20.0) as srv:
        yield srv


def test_the_listed_tools_keep_the_server_schema(server: MCPServer) -> None:
    listed = {t.name: t for t in server.tools()}
    assert sorted(listed) == ["add", "capital", "wait"]
    add, capital = listed["add"], listed["capital"]
    assert add.description == "Add two integers."
    raw = capital.input_schema  # type: ignore[attr-defined]
    schema = capital.args_schema
    # the round trip: every property keeps its type, enum and default; required stays required
    assert schema["required"] == raw["required"] == ["country"]
    for key, prop in raw["properties"].items():
        for attr in ("type", "enum", "default"):
            assert schema["properties"][key].get(attr) == prop.get(attr), (key, attr)
    assert schema["additionalProperties"] is False
    assert 'style (one of "plain", "upper", default "plain")' in capital.describe()
    # arguments are checked before the call, and only those given are sent
    assert capital.validate({"country": "peru"}) == {"country": "peru"}
    bad = capital.run({"country": "peru", "style": "shout"})
    assert bad.error is not None and bad.error.startswith("invalid arguments for tool 'capital'")
    assert add.run({"a": 2, "b": 40}).observation == "42"
    assert Tool.from_mcp(server, "add").name == "add" and [t.name for t in mcp_tools(server, ["capital"])] == [
        "capital"
    ]
    with pytest.raises(ConfigError, match="no tool"):
        server.tools(["nope"])


def test_react_calls_the_server_tools_and_a_server_error_is_an_observation(server: MCPServer) -> None:
    lm = FakeLM(
        [
            act("capital", country="Atlantis"),
            act("capital", country="Peru", style="upper"),
            act("add", a=2, b=3),
            finish(),
            {"answer": "LIMA"},
        ],
        capabilities=Capabilities(json_schema=True),
    )
    agent = ReAct("question -> answer", tools=server.tools(), lm=lm)
    out = agent(question="What is the capital of Peru?")
    assert out.answer == "LIMA"
    steps = [(s["tool"], s["observation"]) for s in out.trajectory]
    assert steps[1:] == [("capital", "LIMA"), ("add", "5"), ("finish", None)]
    tool, observation = steps[0]
    assert tool == "capital" and "no capital known for 'Atlantis'" in observation
    assert out.trajectory[0]["error"] is not None and "ToolError" in out.trajectory[0]["error"]
    # the constrained action follows the server's schemas
    defs = lm.requests[0].response_format["schema"]["$defs"]  # type: ignore[index]
    assert defs["CapitalArgs"]["properties"]["style"]["enum"] == ["plain", "upper"]


def test_a_hanging_call_times_out_and_the_session_goes_on(server: MCPServer) -> None:
    wait = server.tool("wait")
    wait.timeout = 1.0
    started = time.monotonic()
    result = wait.run({"seconds": 30})
    assert result.error is not None and "timed out" in result.error and time.monotonic() - started < 10
    assert wait.run({"seconds": 0}).observation == "waited 0 s"


def test_an_agent_with_mcp_tools_saves_and_loads(server: MCPServer, tmp_path: Path) -> None:
    agent = ReAct("question -> answer", tools=server.tools(), lm=FakeLM([finish(), {"answer": "x"}]))
    path = tmp_path / "agent.json"
    agent.save(path)
    lm = FakeLM([act("add", a=1, b=1), finish(), {"answer": "2"}])
    loaded = oobleck.load(path, tools=server.tools(), lm=lm).program
    assert loaded(question="1+1?").trajectory[0]["observation"] == "2"
    with pytest.raises(oobleck.ArtifactError, match="capital"):
        oobleck.load(path, tools=server.tools(["add"]))


def test_schema_model_handles_odd_names_and_optional_arguments() -> None:
    model = schema_model(
        "find",
        {
            "type": "object",
            "properties": {"max-hits": {"type": "integer"}, "q": {"type": "string", "description": "words"}},
            "required": ["q"],
        },
    )
    schema = model.model_json_schema()
    assert set(schema["properties"]) == {"max-hits", "q"} and "default" not in schema["properties"]["max-hits"]
    assert schema["properties"]["q"]["description"] == "words"
    assert model.model_validate({"q": "x"}).model_dump(by_alias=True, exclude_unset=True) == {"q": "x"}
    with pytest.raises(ConfigError, match="object schema"):
        schema_model("f", {"type": "string"})


def test_a_command_that_is_not_an_mcp_server_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="could not connect"):
        MCPServer(command=[sys.executable, "-c", "print('hello')"], connect_timeout=30).connect()
    with pytest.raises(ConfigError, match="exactly one"):
        MCPServer()


def test_a_server_that_never_answers_is_stopped_when_connecting_times_out(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    silent = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    server = MCPServer(command=[sys.executable, "-c", silent], connect_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(ToolError, match="did not answer within 1 s"):
            server.connect()
        waited = time.monotonic() - started
        assert server._thread is not None and not server._thread.is_alive()  # the session's thread ended
        assert waited < 8, waited
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the silent server's subprocess was left running"
    finally:
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError):  # a zombie (ended, not yet reaped) counts as ended
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    return True


def test_an_argument_named_self_reaches_the_server() -> None:
    class Echo:
        def call(self, name: str, arguments: dict[str, object], *, timeout: float | None = None) -> str:
            return json.dumps({"tool": name, **arguments}, sort_keys=True)

    spec = {
        "name": "echo",
        "inputSchema": {"type": "object", "properties": {"self": {"type": "string"}, "n": {"type": "integer"}}},
    }
    tool = MCPTool(Echo(), spec)  # type: ignore[arg-type]  # the server's call is all it uses
    out = tool.run({"self": "me", "n": 2})
    assert out.error is None and out.observation == '{"n": 2, "self": "me", "tool": "echo"}'


def test_a_missing_mcp_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(ConfigError, match=r"oobleck\[mcp\]"):
        MCPServer(command=["server"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_streamable_http_transport() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        with MCPServer(url=f"http://127.0.0.1:{port}/mcp", headers={"X-Test": "1"}) as srv:
            add = srv.tool("add")
            assert add.run({"a": 20, "b": 22}).observation == "42"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_react_on_the_embedded_model_calls_the_mcp_server(server: MCPServer, local_lm: object) -> None:
    import json

    from oobleck import trace
    from oobleck.modules.react import StepPredict

    tools = server.tools(["add", "capital"])
    agent = ReAct("question -> answer", tools=tools, max_iters=2, tool_first=True, lm=local_lm)
    agent.extract.config["max_tokens"] = 24
    observations = []
    with trace() as t:
        for question in ("What is the capital of Peru?", "What is 2 plus 3?"):
            out = agent(question=question)
            assert out.trajectory and all(s["tool"] is not None for s in out.trajectory), out.trajectory
            observations += [s["observation"] for s in out.trajectory if s["tool"] in ("add", "capital")]
    assert observations  # tool_first: the first step of each question called the server
    for entry in (e for e in t.entries if isinstance(e.predictor, StepPredict)):
        assert entry.error is None and entry.usage.retries == 0
        assert json.loads(entry.raw)["next_action"]["tool"] in ("add", "capital", "finish")


def test_wrapping_an_mcp_tool_keeps_it_and_renames_it(server: MCPServer) -> None:
    add = server.tool("add")
    plus = Tool(add, name="plus", timeout=5.0)
    assert isinstance(plus, MCPTool) and (plus.name, plus.remote_name) == ("plus", "add")
    assert (plus.description, plus.args_schema, plus.timeout) == (add.description, add.args_schema, 5.0)
    assert plus.run({"a": 2, "b": 40}).observation == "42"
    assert Tool(add).name == "add" and add.timeout == 20.0
    agent = ReAct("question -> answer", tools=[plus], lm=FakeLM([act("plus", a=1, b=2), finish(), {"answer": "3"}]))
    assert agent(question="1+2?").trajectory[0]["observation"] == "3"
