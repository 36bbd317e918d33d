"""ReAct's next action as a native tool call (the OpenAI ``tools`` API).

On a backend whose ``capabilities.tool_calls`` is True, the step predictor does not ask for
``next_action`` as text: the request carries each tool's JSON schema as a function (plus
``finish``) with ``tool_choice="required"``, the prompt asks only for ``next_thought`` (the
text beside the call), and the action is read from the response's ``tool_calls``.

What the model calls is judged here, never trusted: a call to a tool that does not exist, or
arguments that are not a JSON object, become a step whose ``error`` the model reads in the
trajectory on the next step (the loop goes on); arguments that are an object but do not fit the
tool's schema go to :meth:`oobleck.Tool.run`, whose observation says what was wrong. A response
with no tool call at all is a :class:`~oobleck.errors.ParseError` (repaired like any other, up to
``max_retries``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pydantic

from oobleck.adapters.base import Adapter
from oobleck.errors import ParseError
from oobleck.lm.base import LM
from oobleck.lm.types import Choice, LMRequest
from oobleck.signature import Signature
from oobleck.tool import Tool

__all__ = ["NATIVE_NOTE", "UNREADABLE", "native", "read_action", "thought_signature", "tool_specs"]

#: What the step's instructions gain when the action is a native tool call.
NATIVE_NOTE = (
    "Write next_thought as text, then call exactly one of the functions you are given: a tool, or "
    "finish when you know enough."
)
#: How a step whose action could not be read starts its ``error``.
UNREADABLE = "the next action could not be read"
FINISH_SPEC = {
    "type": "function",
    "function": {
        "name": "finish",
        "description": "Marks the task as complete; the answer is written from the trajectory.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}


def native(lm: LM) -> bool:
    """Whether ``lm`` takes the next action as a native tool call."""
    return bool(getattr(lm.capabilities, "tool_calls", False))


def thought_signature(step: Signature) -> Signature:
    """The step signature without ``next_action`` (the call carries it), told to call a function."""
    sig = step.delete("next_action")
    return sig.with_instructions(f"{step.instructions.rstrip()}\n\n{NATIVE_NOTE}")


def tool_specs(tools: Mapping[str, Tool], *, finish: bool) -> tuple[dict[str, Any], ...]:
    """Each tool as an OpenAI function (name, description, argument schema), then ``finish``."""
    specs = [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.args_schema}}
        for t in tools.values()
    ]
    return (*specs, *([FINISH_SPEC] if finish else []))


def native_request(request: LMRequest, tools: Mapping[str, Tool], *, finish: bool) -> LMRequest:
    """``request`` (rendered for :func:`thought_signature`) with the tools and no response format."""
    return request.model_copy(
        update={"tools": tool_specs(tools, finish=finish), "tool_choice": "required", "response_format": None}
    )


def read_action(
    choice: Choice, *, adapter: Adapter, step: Signature, tools: Mapping[str, Tool], finish: bool
) -> dict[str, Any]:
    """The step's outputs from a response with tool calls: ``next_thought`` and ``next_action``.

    ``next_action`` is the action type's value (as the constrained path gives it) when the call
    fits, else ``{"tool": <name>, "args": <object>}`` (arguments the tool will refuse with an
    observation), else ``{"tool": None, "error": <why>}`` for a call that cannot be run.

    Raises:
        ParseError: the response has no tool call.
    """
    thought = _thought(choice.text, adapter=adapter, step=step)
    calls = choice.tool_calls or ()
    if not calls:
        raise ParseError(
            "expected the next action as a tool call, but the response has none "
            f"(text: {choice.text[:200]!r}); call one of the functions",
            raw=choice.text,
            field="next_action",
            signature=step,
            reason="no tool call in the response",
        )
    call = calls[0]
    known = [*tools, *(["finish"] if finish else [])]
    if call.name not in known:
        return _outputs(thought, _error(f"there is no tool named {call.name!r}; call one of {known}"))
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError as exc:
        return _outputs(
            thought, _error(f"the arguments of {call.name!r} are not valid JSON ({exc}): {call.arguments[:200]!r}")
        )
    except RecursionError:
        return _outputs(
            thought, _error(f"the arguments of {call.name!r} are nested too deeply to read: {call.arguments[:200]!r}")
        )
    if not isinstance(args, dict):
        return _outputs(thought, _error(f"the arguments of {call.name!r} must be a JSON object, got {args!r:.200}"))
    action: dict[str, Any] = {"tool": call.name} if call.name == "finish" else {"tool": call.name, "args": args}
    try:
        action_type: Any = step.output_fields["next_action"].type
        typed: Any = pydantic.TypeAdapter(action_type).validate_python(action)
    except pydantic.ValidationError:
        typed = action  # Tool.run refuses the arguments with an observation saying why
    return _outputs(thought, typed)


def raw_text(choice: Choice) -> str:
    """The response as the trace records it: the text, then each call."""
    calls = [f"{c.name}({c.arguments})" for c in choice.tool_calls or ()]
    return "\n".join([choice.text, *calls]).strip()


def _thought(text: str, *, adapter: Adapter, step: Signature) -> str:
    if not text.strip():
        return ""
    try:
        value = adapter.parse(thought_signature(step), text).get("next_thought")
    except ParseError:
        return text.strip()  # the thought is free text: whatever the model wrote beside the call
    return str(value if value is not None else text).strip()


def _error(reason: str) -> dict[str, Any]:
    return {"tool": None, "error": f"{UNREADABLE}: {reason}"}


def _outputs(thought: str, action: Any) -> dict[str, Any]:
    return {"next_thought": thought, "next_action": action}
