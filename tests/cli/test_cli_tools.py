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
