"""ReAct: an agent loop of thought, tool call and observation, then an answer from the trajectory.

Each step, the ``react`` predictor reads the program's inputs and the trajectory so far and
writes ``next_thought`` and ``next_action``: one JSON object ``{"tool": <name>, "args": {...}}``
whose type is a union with one member per tool (the tool's name as a constant, its argument
schema) plus ``{"tool": "finish"}``. On a backend with structured output
(``capabilities.json_schema``: LocalLM's grammar, a server taking a JSON schema) the default
JSON adapter sends that union as ``response_format``, so the model can only write a known tool
with arguments valid for it: an unparseable tool call cannot happen. Elsewhere the action is
written as JSON inside the chat format and read with the usual parse repair
(``max_retries``). On a backend with native tool calling (``capabilities.tool_calls``: the
OpenAI ``tools`` API) the action is a tool call instead: each tool's schema is sent as a
function, plus ``finish`` (see :mod:`oobleck.modules._react_native`); a call to an unknown tool
or with arguments that are not a JSON object becomes a step whose ``error`` the model reads
next, and the loop goes on. The tool runs (:meth:`oobleck.Tool.run`: invalid arguments, exceptions,
timeouts and huge results become observations) and the loop goes on until ``finish`` or
``max_iters`` steps; then the ``extract`` predictor writes the signature's outputs from the
inputs and the trajectory.

Both steps are ordinary predictors (``named_predictors()`` gives ``react`` and ``extract``), so
every optimizer tunes an agent as it tunes any program: a bootstrapped demo of ``react`` is a
step of a successful run with the trajectory that led to it (the finishing step carries the
whole trajectory). The prediction carries the outputs and ``trajectory``: one dict per step
with ``thought``, ``tool``, ``args``, ``observation``, ``error`` and ``seconds`` (the tool's
running time). An action that cannot be read even after repair ends the loop with a step whose
``tool`` is None and whose ``error`` says why; the answer is then extracted from what was found.
A :class:`~oobleck.errors.BudgetExceededError` or an LM error propagates.

Saving stores each tool by name and argument schema, never its code; load the artifact with
``oobleck.load(path, tools=[...])`` to bind the functions again.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Union

import pydantic
import pydantic_core

from oobleck import _types
from oobleck._tool_schema import placeholder_tool, placeholders_allowed
from oobleck.adapters.base import Adapter
from oobleck.errors import ArtifactError, ConfigError, InputError, ParseError
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.lm.types import Choice, LMRequest, LMResponse, Usage
from oobleck.module import Module
from oobleck.modules import _react_native
from oobleck.predict import Predict
from oobleck.signature import Field, Signature, ensure_signature
from oobleck.tool import Tool, ToolResult, bound_tools, ensure_tools

__all__ = ["FINISH", "ReAct", "StepPredict", "action_type", "format_trajectory"]

#: The action that ends the loop.
FINISH = "finish"
NO_STEPS = "(no steps yet)"
#: The step predictor's ``max_tokens`` unless one is given: room for the longest thought
#: (:attr:`StepPredict.max_thought_chars`, a token per character at worst) and an action with
#: a string argument (:attr:`StepPredict.max_arg_chars`).
STEP_MAX_TOKENS = 512
THOUGHT_DESC = "what you know so far and what to do next, in one or two sentences"
ACTION_DESC = 'the next tool call as {"tool": <tool name>, "args": {<its arguments>}}, or {"tool": "finish"}'
TRAJECTORY_DESC = "the thoughts, tool calls and observations so far"


class _NoArgs(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


def action_type(tools: Mapping[str, Tool]) -> Any:
    """The type of ``next_action``: one member per tool plus ``finish``.

    Each member is an object ``{"tool": <constant name>, "args": <the tool's argument model>}``;
    its JSON schema is an ``anyOf`` of them, which a grammar-constrained backend follows.
    """
    members: list[Any] = []
    for name, tool in tools.items():
        model_name = "Call_" + re.sub(r"\W", "_", name)
        members.append(
            pydantic.create_model(
                model_name,
                __config__=pydantic.ConfigDict(extra="forbid"),
                tool=(Literal[name], ...),  # type: ignore[arg-type]  # a Literal built at run time
                args=(tool.args_model, ...),
            )
        )
    members.append(
        pydantic.create_model(
            "Finish",
            __config__=pydantic.ConfigDict(extra="forbid"),
            tool=(Literal[FINISH], ...),  # type: ignore[arg-type]  # as above
            args=(_NoArgs, pydantic.Field(default_factory=_NoArgs)),
        )
    )
    return Union[tuple(members)]


def format_trajectory(steps: Sequence[Mapping[str, Any]]) -> str:
    """The trajectory as the model reads it: thought, action and observation per step.

    Example:
        >>> print(format_trajectory([{"thought": "look it up", "tool": "search", "args": {"q": "x"}, "observation": "x is 1"}]))
        Step 1
        Thought: look it up
        Action: search {"q": "x"}
        Observation: x is 1
    """
    if not steps:
        return NO_STEPS
    parts = []
    for i, step in enumerate(steps, start=1):
        lines = [f"Step {i}", f"Thought: {step.get('thought') or ''}"]
        tool = step.get("tool")
        if tool is None:
            lines.append(f"Error: {step.get('error')}")
        elif tool == FINISH:
            lines.append("Action: finish")
        else:
            args = json.dumps(step.get("args") or {}, ensure_ascii=False, sort_keys=True)
            lines.append(f"Action: {tool} {args}")
            lines.append(f"Observation: {step.get('observation')}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _instructions(base: Signature, tools: Mapping[str, Tool]) -> str:
    inputs = ", ".join(f"`{n}`" for n in base.input_fields)
    outputs = ", ".join(f"`{n}`" for n in base.output_fields)
    listed = "\n".join(f"({i}) {t.describe()}" for i, t in enumerate(tools.values(), start=1))
    task = base.instructions.strip()
    return (
        (f"{task}\n\n" if task else "")
        + f"You are an agent. Given {inputs} and the trajectory so far, call tools to find what you need to "
        f"produce {outputs}. Each step, write next_thought, then next_action: one tool call with its "
        'arguments. When you know enough, choose {"tool": "finish"}.\n\nTools:\n'
        + listed
        + f"\n({len(tools) + 1}) finish: marks the task as complete; the answer is written from the trajectory."
    )


def step_signature(base: Signature, tools: Mapping[str, Tool]) -> Signature:
    """``<inputs>, trajectory -> next_thought, next_action`` with the tools in the instructions."""
    fields = (
        *base.input_fields.values(),
        Field("trajectory", "input", str, TRAJECTORY_DESC),
        Field("next_thought", "output", str, THOUGHT_DESC),
        Field("next_action", "output", action_type(tools), ACTION_DESC),
    )
    return Signature(fields=fields, instructions=_instructions(base, tools), name="ReActStep")


def extract_signature(base: Signature) -> Signature:
    """``<inputs>, trajectory -> <outputs>`` with the task's own instructions."""
    return base.append("trajectory", "input", desc=TRAJECTORY_DESC)


class StepPredict(Predict):
    """The step predictor: a Predict whose constrained answer also bounds the thought's length.

    Where the adapter sends a JSON schema (``response_format``), ``next_thought`` gets a
    ``maxLength`` of :attr:`max_thought_chars` and each string argument without a limit of its
    own one of :attr:`max_arg_chars`, so a small model cannot spend the completion's
    ``max_tokens`` on one string and leave the action cut off (a grammar makes the JSON valid
    only if it is finished). The signature itself is unchanged, so prompts and artifacts are
    those of a plain Predict.
    """

    #: The longest thought a constrained backend lets the model write (in characters: at worst
    #: one token each, within the step's default ``max_tokens`` of :data:`STEP_MAX_TOKENS`).
    max_thought_chars = 200
    #: The longest string argument the constrained action allows where the tool's schema sets
    #: no ``maxLength`` of its own (a small model otherwise may repeat a digit until cut off).
    max_arg_chars = 200

    def _request(self, adapter: Adapter, lm: LM, inputs: Mapping[str, Any]) -> LMRequest:
        """The step's request; on a backend with native tool calls, the action is a tool call."""
        if not _react_native.native(lm):
            return super()._request(adapter, lm, inputs)
        view = copy.copy(self)  # rendered without next_action: the tool call carries it
        view.signature = _react_native.thought_signature(self.signature)
        request = Predict._request(view, adapter, lm, inputs)
        return _react_native.native_request(request, self._tools(), finish=not _NO_FINISH.get())

    def _tools(self) -> dict[str, Tool]:
        tools = _STEP_TOOLS.get()
        if tools is None:
            raise ConfigError("a ReAct step predictor on a backend with native tool calls runs inside its ReAct")
        return tools

    def _parse(
        self,
        adapter: Adapter,
        inputs: Mapping[str, Any],
        request: LMRequest,
        response: LMResponse,
        usage: Usage,
        spent: Usage,
        signature: Signature,
        final: bool,
    ) -> Prediction | ParseError:
        if request.tools is None:
            return super()._parse(adapter, inputs, request, response, usage, spent, signature, final)
        choice = response.choices[0] if response.choices else Choice(text="")
        raw = _react_native.raw_text(choice)
        try:
            outputs = _react_native.read_action(
                choice, adapter=adapter, step=signature, tools=self._tools(), finish=not _NO_FINISH.get()
            )
        except ParseError as exc:
            self._emit(inputs, None, request, raw, usage, exc)
            return exc
        self._emit(inputs, outputs if final else None, request, raw, usage, None)
        total = spent + usage if spent.calls or spent.cache_hits else usage
        return Prediction(outputs, usage=total)

    def _settings_params(self, adapter: Adapter, lm: LM) -> dict[str, Any]:
        params = super()._settings_params(adapter, lm)
        fmt = params.get("response_format")
        if isinstance(fmt, dict) and isinstance(fmt.get("schema"), dict):
            schema = copy.deepcopy(fmt["schema"])
            props = schema.get("properties", {})
            if isinstance(props.get("next_thought"), dict):
                props["next_thought"]["maxLength"] = self.max_thought_chars
            _bound_strings(schema.get("$defs", {}), self.max_arg_chars)
            action = props.get("next_action")
            if _NO_FINISH.get() and isinstance(action, dict) and isinstance(action.get("anyOf"), list):
                kept = [m for m in action["anyOf"] if _member_tool(m, schema.get("$defs", {})) != FINISH]
                if kept:
                    action["anyOf"] = kept
            params["response_format"] = {**fmt, "schema": schema}
        return params


#: Set by ReAct(tool_first=True) around its first step: the constrained action offers no finish.
_NO_FINISH: contextvars.ContextVar[bool] = contextvars.ContextVar("oobleck_react_no_finish", default=False)
#: Set by ReAct around each step: its tools, for a step that sends them as native tool calls.
_STEP_TOOLS: contextvars.ContextVar[dict[str, Tool] | None] = contextvars.ContextVar(
    "oobleck_react_tools", default=None
)


def _bound_strings(node: Any, limit: int) -> None:
    """Give every free string in ``node`` (a schema part) a ``maxLength`` of ``limit``, in place."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"maxLength", "enum", "const", "pattern", "format"} & set(node):
            node["maxLength"] = limit
        for value in node.values():
            _bound_strings(value, limit)
    elif isinstance(node, list):
        for value in node:
            _bound_strings(value, limit)


def _member_tool(member: Any, defs: Mapping[str, Any]) -> Any:
    """The constant tool name of one member of the action's ``anyOf``."""
    if isinstance(member, dict) and "$ref" in member:
        member = defs.get(str(member["$ref"]).rsplit("/", 1)[-1])
    tool = member.get("properties", {}).get("tool", {}) if isinstance(member, dict) else {}
    return tool.get("const", (tool.get("enum") or [None])[0]) if isinstance(tool, dict) else None


class ReAct(Module):
    """An agent: think, call a tool, observe, repeat; then answer from the trajectory.

    Args:
        signature: the task (e.g. ``"question -> answer"``); its inputs may not include
            ``trajectory``.
        tools: functions or :class:`~oobleck.Tool` objects (at least one).
        max_iters: the most steps (tool calls, or ``finish``) before the answer is extracted.
        tool_first: the first step must call a tool: on a constrained backend its action is
            not offered ``finish`` (a small model otherwise often answers from memory at once).
        lm: the LM of both steps (falls back to ``oobleck.context(lm=...)``).
        adapter: the steps' adapter (default: by the LM's capabilities; constrained JSON where
            the backend takes a JSON schema).
        **kwargs: passed to both predictors (max_retries, decoding parameters). The step
            predictor's ``max_tokens`` defaults to :data:`STEP_MAX_TOKENS`, enough for the
            longest thought a constrained backend allows and the action after it.

    Raises:
        ConfigError: no tools, two tools with one name, a bad ``max_iters``, or a signature
            with a ``trajectory`` input or without outputs.

    Example:
        >>> from oobleck import FakeLM
        >>> def add(a: int, b: int) -> int:
        ...     '''Add two integers.'''
        ...     return a + b
        >>> lm = FakeLM([
        ...     {"next_thought": "add them", "next_action": {"tool": "add", "args": {"a": 2, "b": 3}}},
        ...     {"next_thought": "done", "next_action": {"tool": "finish"}},
        ...     {"answer": "5"},
        ... ])
        >>> out = ReAct("question -> answer", tools=[add], lm=lm)(question="2+3?")
        >>> out.answer, [(s["tool"], s["observation"]) for s in out.trajectory]
        ('5', [('add', '5'), ('finish', None)])
    """

    def __init__(
        self,
        signature: str | Signature | type[Signature],
        tools: Sequence[Tool | Callable[..., Any]],
        *,
        max_iters: int = 5,
        tool_first: bool = False,
        lm: LM | None = None,
        adapter: Adapter | None = None,
        **kwargs: Any,
    ) -> None:
        base = ensure_signature(signature)
        self.tool_first = bool(tool_first)
        if "trajectory" in base.input_fields or not base.output_fields:
            raise ConfigError(f"ReAct needs a signature with outputs and no 'trajectory' input, got {base}")
        for name in ("next_thought", "next_action"):
            if name in base.input_fields:
                raise ConfigError(f"ReAct's signature may not have an input named {name!r} (the step writes it)")
        self.tools = ensure_tools(tools)
        if not self.tools:
            raise ConfigError("ReAct needs at least one tool")
        self.max_iters = _check_iters(max_iters)
        step_config = {"max_tokens": STEP_MAX_TOKENS, **kwargs}
        self.react = StepPredict(step_signature(base, self.tools), lm=lm, adapter=adapter, **step_config)
        self.extract = Predict(extract_signature(base), lm=lm, adapter=adapter, **kwargs)

    def _inputs(self, inputs: Mapping[str, Any]) -> None:
        expected = [n for n in self.react.signature.input_fields if n != "trajectory"]
        if sorted(inputs) != sorted(expected):
            raise InputError(f"ReAct expected inputs {expected}, got {sorted(inputs)}")

    def forward(self, **inputs: Any) -> Prediction:
        """Run the loop, then extract the outputs; the prediction carries ``trajectory``."""
        self._inputs(inputs)
        steps: list[dict[str, Any]] = []
        for _ in range(self.max_iters):
            try:
                with self._first_step(steps):
                    pred = self.react(**inputs, trajectory=format_trajectory(steps))
            except ParseError as exc:
                steps.append(_unreadable(exc))
                break
            step, args = self._decide(pred)
            if step["tool"] is None:  # a native tool call that cannot run: the model reads why next step
                steps.append(step)
                continue
            if step["tool"] == FINISH:
                steps.append(step)
                break
            steps.append(_observed(step, self.tools[step["tool"]].run(args)))
        answer = self.extract(**inputs, trajectory=format_trajectory(steps))
        return Prediction({**answer, "trajectory": steps})

    async def aforward(self, **inputs: Any) -> Prediction:
        """Async form of :meth:`forward` (async tools run on the caller's loop)."""
        self._inputs(inputs)
        steps: list[dict[str, Any]] = []
        for _ in range(self.max_iters):
            try:
                with self._first_step(steps):
                    pred = await self.react.acall(**inputs, trajectory=format_trajectory(steps))
            except ParseError as exc:
                steps.append(_unreadable(exc))
                break
            step, args = self._decide(pred)
            if step["tool"] is None:  # a native tool call that cannot run: the model reads why next step
                steps.append(step)
                continue
            if step["tool"] == FINISH:
                steps.append(step)
                break
            steps.append(_observed(step, await self.tools[step["tool"]].arun(args)))
        answer = await self.extract.acall(**inputs, trajectory=format_trajectory(steps))
        return Prediction({**answer, "trajectory": steps})

    @contextlib.contextmanager
    def _first_step(self, steps: list[dict[str, Any]]) -> Iterator[None]:
        token = _NO_FINISH.set(self.tool_first and not steps)
        tools = _STEP_TOOLS.set(self.tools)
        try:
            yield
        finally:
            _STEP_TOOLS.reset(tools)
            _NO_FINISH.reset(token)

    def _decide(self, pred: Prediction) -> tuple[dict[str, Any], Any]:
        action = pred.next_action
        # JSON values by the schema's names (aliases): the trajectory is formatted and saved as JSON,
        # and Tool.run validates the arguments again from them
        # (a set argument as a sorted list, so the trajectory reads the same in every process)
        if isinstance(action, pydantic.BaseModel):
            dumped = action.model_dump(by_alias=True, exclude_unset=True)
            data = pydantic_core.to_jsonable_python(_types.stable_order(dumped))
        else:
            data = dict(action)
        name, args = data.get("tool"), data.get("args") or {}
        if name is None and data.get("error"):  # a native tool call that could not be read
            return _unreadable_step(str(pred.next_thought), str(data["error"])), {}
        if name != FINISH and name not in self.tools:  # a placeholder in a dry run, or a rebuilt type
            name = FINISH
        step = {"thought": str(pred.next_thought), "tool": name, "args": args if name != FINISH else {}}
        return {**step, "observation": None, "error": None, "seconds": 0.0}, args

    # ---- saving: tools by name and schema, never code ----

    def dump_extra(self, files: Any) -> dict[str, Any]:
        """``max_iters`` and each tool's spec (name, description, argument schema)."""
        return {
            "max_iters": self.max_iters,
            "tool_first": self.tool_first,
            "tools": [t.spec() for t in self.tools.values()],
        }

    def load_extra(self, extra: dict[str, Any], files: Any) -> None:
        """Bind the saved tool specs to the functions given to load (or held by this program).

        Raises:
            ArtifactError: a saved tool is not given, or its argument schema differs.
        """
        specs = extra.get("tools")
        if not isinstance(specs, list) or not specs or not all(isinstance(s, dict) for s in specs):
            raise ArtifactError("a saved ReAct needs a non-empty list of tool specs")
        saved = {str(s.get("name")): s for s in specs}
        names = list(saved)
        given = bound_tools()  # given to load(..., tools=), else this program's own
        if given is None and isinstance(self.__dict__.get("tools"), dict):
            given = self.__dict__["tools"]
        if given is None and placeholders_allowed():  # read, not run (oobleck inspect)
            given = {name: placeholder_tool(spec) for name, spec in saved.items()}
        if given is None:
            raise ArtifactError(
                f"this artifact holds a ReAct agent that calls the tools {names}; artifacts never store code, "
                f"so pass the functions: oobleck.load(path, tools=[{', '.join(names)}])"
            )
        missing = [n for n in names if n not in given]
        if missing:
            raise ArtifactError(
                f"the saved ReAct agent calls the tool(s) {missing}, which were not given to load "
                f"(given: {sorted(given)}); pass them in oobleck.load(path, tools=[...])"
            )
        for name, spec in saved.items():
            if spec.get("args") != given[name].args_schema:
                raise ArtifactError(
                    f"tool {name!r} does not have the arguments it was saved with: saved "
                    f"{json.dumps(spec.get('args'), sort_keys=True)[:300]}, given "
                    f"{json.dumps(given[name].args_schema, sort_keys=True)[:300]}; pass the function the agent "
                    "was compiled with, or compile again"
                )
        tools = {n: given[n] for n in names}
        react = self.__dict__.get("react")
        if not isinstance(react, Predict) or "next_action" not in react.signature.output_fields:
            raise ArtifactError("a saved ReAct needs its step predictor 'react' with a next_action output")
        self.max_iters = _check_iters(extra.get("max_iters", 5))
        tool_first = extra.get("tool_first", False)
        if not isinstance(tool_first, bool):
            raise ArtifactError(f"ReAct tool_first must be true or false, got {tool_first!r}")
        self.tool_first = tool_first
        self.tools = tools
        if type(react) is Predict:  # rebuilt from the file as a plain Predict: same state, bounded thought
            react.__class__ = StepPredict
        react.signature = react.signature.with_updated_field("next_action", type=action_type(tools))


def _check_iters(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"max_iters must be an int >= 1, got {value!r}")
    return value


def _observed(step: dict[str, Any], result: ToolResult) -> dict[str, Any]:
    return {**step, "observation": result.observation, "error": result.error, "seconds": result.seconds}


def _unreadable(exc: ParseError) -> dict[str, Any]:
    return _unreadable_step(None, f"{_react_native.UNREADABLE}: {exc.reason or str(exc)}")


def _unreadable_step(thought: str | None, error: str) -> dict[str, Any]:
    return {"thought": thought, "tool": None, "args": None, "observation": None, "error": error, "seconds": 0.0}
