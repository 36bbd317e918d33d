"""ReAct's next action as a native tool call (the OpenAI ``tools`` API), over a mock transport."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from oobleck import FakeLM, ReAct
from oobleck.errors import ConfigError
from oobleck.lm import CachedLM, Capabilities, Choice, LMRequest, Message, OpenAILM, ToolCall, _chat_wire

NATIVE = Capabilities(json_schema=True, logprobs=True, n=True, tool_calls=True)


def search(query: str, k: int = 2) -> str:
    """Search the notes.

    Args:
        query: what to look for.
        k: how many notes.
    """
    return f"notes about {query} (k={k})"


def completion(content: str | None = None, calls: list[tuple[str, str]] | None = None) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if calls is not None:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(calls)
        ]
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def mock_lm(bodies: list[dict], capabilities: Capabilities | None = NATIVE) -> tuple[OpenAILM, list[dict]]:
    sent: list[dict] = []
    queue = list(bodies)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=queue.pop(0))

    client = openai.OpenAI(
        api_key="k",
        base_url="http://fake.local/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    return OpenAILM("m", client=client, capabilities=capabilities, backoff=0.001), sent


def test_request_carries_tools_and_finish_and_reads_the_calls():
    lm, sent = mock_lm(
        [
            completion("look it up", [("search", '{"query": "paris"}')]),
            completion("done", [("finish", "{}")]),
            completion(json.dumps({"answer": "Paris"})),
        ]
    )
    agent = ReAct("question -> answer", tools=[search], lm=lm)
    out = agent(question="capital of France?")
    assert out.answer == "Paris"
    assert [(s["tool"], s["args"], s["observation"]) for s in out.trajectory] == [
        ("search", {"query": "paris"}, "notes about paris (k=2)"),
        ("finish", {}, None),
    ]
    assert out.trajectory[0]["thought"] == "look it up"
    step = sent[0]
    assert step["tool_choice"] == "required"
    assert "response_format" not in step  # the call carries the action, not a JSON answer
    names = [t["function"]["name"] for t in step["tools"]]
    assert names == ["search", "finish"]
    params = step["tools"][0]["function"]["parameters"]
    assert params["properties"]["query"]["type"] == "string" and params["required"] == ["query"]
    assert all(t["type"] == "function" for t in step["tools"])
    assert "next_action" not in step["messages"][-1]["content"]  # the prompt asks only for the thought
    assert "tools" not in sent[2]  # the answer is extracted without tools


def test_constrained_action_where_the_server_has_no_tool_calls():
    lm, sent = mock_lm(
        [
            completion(json.dumps({"next_thought": "t", "next_action": {"tool": "finish"}})),
            completion(json.dumps({"answer": "x"})),
        ],
        capabilities=Capabilities(json_schema=True),
    )
    out = ReAct("question -> answer", tools=[search], lm=lm)(question="q")
    assert out.answer == "x"
    assert "tools" not in sent[0] and sent[0]["response_format"]["type"] == "json_schema"


def test_tool_first_offers_no_finish_on_the_first_step():
    lm, sent = mock_lm(
        [
            completion("", [("search", '{"query": "a"}')]),
            completion("", [("finish", "{}")]),
            completion(json.dumps({"answer": "a"})),
        ]
    )
    ReAct("question -> answer", tools=[search], lm=lm, tool_first=True)(question="q")
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["search"]
    assert [t["function"]["name"] for t in sent[1]["tools"]] == ["search", "finish"]


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("search", '{"query": "unterminated', "not valid JSON"),
        ("search", "[1, 2]", "must be a JSON object"),
        ("search", '{"query": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ("delete_everything", "{}", "no tool named 'delete_everything'"),
    ],
)
def test_a_malformed_call_becomes_an_error_the_model_reads_and_the_loop_goes_on(name, arguments, says):
    lm, sent = mock_lm(
        [
            completion("try", [(name, arguments)]),
            completion("again", [("search", '{"query": "b"}')]),
            completion("", [("finish", "{}")]),
            completion(json.dumps({"answer": "b"})),
        ]
    )
    out = ReAct("question -> answer", tools=[search], lm=lm)(question="q")
    bad, good, done = out.trajectory
    assert bad["tool"] is None and says in bad["error"] and bad["error"].startswith("the next action could not be read")
    assert bad["thought"] == "try"
    assert (good["tool"], good["observation"]) == ("search", "notes about b (k=2)")
    assert done["tool"] == "finish" and out.answer == "b"
    assert says in sent[1]["messages"][-1]["content"]  # the next step shows the model what went wrong


def test_arguments_that_break_the_schema_are_refused_by_the_tool_as_an_observation():
    lm, _ = mock_lm(
        [
            completion("", [("search", '{"k": "many"}')]),
            completion("", [("finish", "{}")]),
            completion(json.dumps({"answer": "none"})),
        ]
    )
    out = ReAct("question -> answer", tools=[search], lm=lm)(question="q")
    step = out.trajectory[0]
    assert step["tool"] == "search" and "invalid arguments" in step["error"]


def test_no_tool_call_is_repaired_then_recorded_never_raised():
    lm, sent = mock_lm(
        [
            completion("I just know it"),
            completion("", [("finish", "{}")]),
            completion(json.dumps({"answer": "x"})),
        ]
    )
    out = ReAct("question -> answer", tools=[search], lm=lm, max_retries=1)(question="q")
    assert [s["tool"] for s in out.trajectory] == ["finish"]
    assert "tool call" in sent[1]["messages"][-1]["content"]  # the repair says what was missing
    lm, _ = mock_lm([completion("no call"), completion(json.dumps({"answer": "y"}))])
    out = ReAct("question -> answer", tools=[search], lm=lm)(question="q")
    assert out.trajectory[0]["tool"] is None and "no tool call" in out.trajectory[0]["error"]


def test_wire_parses_tool_calls_and_refuses_garbage():
    response = _chat_wire.from_dict(completion("t", [("search", '{"query": "x"}')]))
    assert response.choices[0].tool_calls == (ToolCall(name="search", arguments='{"query": "x"}', id="call_0"),)
    assert _chat_wire.from_dict(completion("t")).choices[0].tool_calls is None
    body = completion("t")
    body["choices"][0]["message"]["tool_calls"] = [{"function": {"name": "s", "arguments": {"a": 1}}}]
    assert _chat_wire.from_dict(body).choices[0].tool_calls[0].arguments == '{"a": 1}'
    body["choices"][0]["message"]["tool_calls"] = "oops"
    with pytest.raises(Exception, match="tool_calls to be a list"):
        _chat_wire.from_dict(body)
    body["choices"][0]["message"]["tool_calls"] = [{"function": {}}]
    with pytest.raises(Exception, match="function name"):
        _chat_wire.from_dict(body)


def test_tools_are_part_of_the_request_identity_and_the_cache_key(tmp_path):
    base = LMRequest(messages=(Message(role="user", content="hi"),))
    spec = {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}
    with_tools = base.model_copy(update={"tools": (spec,), "tool_choice": "required"})
    assert base.key_data() != with_tools.key_data()
    inner = FakeLM(["plain", ToolCall(name="a", arguments="{}")], capabilities=Capabilities(tool_calls=True))
    cached = CachedLM(inner, tmp_path)
    assert cached.complete(base).text == "plain"
    assert cached.complete(with_tools).choices[0].tool_calls[0].name == "a"  # not the cached plain answer
    again = cached.complete(with_tools)
    assert again.cached and again.choices[0].tool_calls[0].name == "a"  # tool calls survive the cache
    assert len(inner.requests) == 2


def test_fakelm_scripts_native_calls_for_a_whole_agent():
    lm = FakeLM(
        [
            Choice(text="search first", tool_calls=(ToolCall(name="search", arguments='{"query": "q"}'),)),
            ToolCall(name="finish"),
            {"answer": "done"},
        ],
        capabilities=Capabilities(tool_calls=True),
    )
    out = ReAct("question -> answer", tools=[search], lm=lm)(question="q")
    assert out.answer == "done" and [s["tool"] for s in out.trajectory] == ["search", "finish"]
    assert lm.requests[0].tools is not None and lm.requests[2].tools is None


def test_default_capabilities_per_backend():
    assert OpenAILM("gpt-4o-mini", api_key="k").capabilities.tool_calls  # OpenAI's own API
    assert not OpenAILM("m", base_url="http://127.0.0.1:1/v1").capabilities.tool_calls  # unknown server
    assert not FakeLM().capabilities.tool_calls


def test_the_native_path_needs_its_react():
    lm = FakeLM([ToolCall(name="finish")], capabilities=Capabilities(tool_calls=True))
    agent = ReAct("question -> answer", tools=[search], lm=lm)
    with pytest.raises(ConfigError, match="inside its ReAct"):
        agent.react(question="q", trajectory="")


@pytest.mark.parametrize(("sent", "read"), [([1, "a"], '[1, "a"]'), (True, "true"), (None, "{}"), (7, "7")])
def test_tool_call_arguments_sent_as_other_json_values_stay_json(sent, read):
    # Arguments that came as a JSON value other than a string or an object were kept as
    # Python's repr (['a'] with single quotes, True): not JSON, so the call was judged
    # malformed for the server's spelling, not the model's.
    body = completion("t")
    body["choices"][0]["message"]["tool_calls"] = [{"function": {"name": "s", "arguments": sent}}]
    assert _chat_wire.from_dict(body).choices[0].tool_calls[0].arguments == read
