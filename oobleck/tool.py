"""Tool: a typed Python function an agent (:class:`~oobleck.modules.ReAct`) may call.

A tool is built from any typed function, sync or async. Its name is the function's, its
description the first paragraph of the docstring, and its arguments a JSON schema built by
pydantic from the annotations (defaults, ``Optional``, ``Literal``, pydantic models, lists and
dicts), with each argument's description taken from a Google-style ``Args:`` section.

Running a tool never crashes the program that called it: arguments are validated first, and
invalid arguments, an exception, a timeout or a huge result all come back as an observation
string the model can read (:class:`ToolResult`). Only :class:`~oobleck.errors.BudgetExceededError`
(a tool that itself calls an LM past the budget) propagates.

Timeouts: an async tool runs under ``asyncio.wait_for``; a sync tool runs in a daemon worker
thread that is abandoned (not killed: Python cannot kill a thread) when it overruns, so a hung
tool costs a thread, never the program.

An artifact stores a tool by :meth:`Tool.spec` (name, description and argument schema), never
its code; ``oobleck.load(path, tools=[...])`` binds the functions again (see :func:`binding`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import re
import threading
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from oobleck import _types, callbacks
from oobleck.errors import BudgetExceededError, ConfigError

__all__ = ["Tool", "ToolResult", "binding", "bound_tools", "ensure_tools"]

#: Observations longer than this many characters are cut (per tool: ``Tool(max_chars=...)``).
DEFAULT_MAX_CHARS = 4000
#: Seconds a tool may run (per tool: ``Tool(timeout=...)``; None: no limit).
DEFAULT_TIMEOUT = 30.0


class _Unset:
    """The type of a ``Tool`` argument not given (wrapping a Tool keeps that Tool's setting)."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What one tool call gave the model.

    Attributes:
        observation: the text the model sees next (the result, or the error explained).
        error: why the call failed (invalid arguments, an exception, a timeout), else None.
        seconds: how long the call took.
        truncated: how many characters of the result were cut (0: none).
    """

    observation: str
    error: str | None = None
    seconds: float = 0.0
    truncated: int = 0


class Tool:
    """A function the model may call, with its name, description and argument schema.

    Args:
        func: any function with annotated parameters (sync or ``async def``); no ``*args``
            or ``**kwargs``. An unannotated parameter accepts any JSON value.
            A :class:`Tool` (an MCP tool included) is copied: the copy keeps its name,
            description, argument schema and settings, except those given here.
        name: the name the model calls it by (default: the function's name).
        description: what it does (default: the docstring's first paragraph).
        timeout: seconds a call may take (None: no limit; default 30).
        max_chars: the longest observation; longer results are cut with a note saying how
            much was cut (default 4000).

    Raises:
        ConfigError: not a callable, ``*args``/``**kwargs``, a bad name, or annotations
            pydantic cannot turn into a schema.

    Example:
        >>> def add(a: int, b: int = 1) -> int:
        ...     '''Add two numbers.
        ...
        ...     Args:
        ...         a: the first number.
        ...         b: the second number.
        ...     '''
        ...     return a + b
        >>> tool = Tool(add)
        >>> tool.name, tool.description, tool.args_schema["properties"]["a"]
        ('add', 'Add two numbers.', {'description': 'the first number.', 'title': 'A', 'type': 'integer'})
        >>> tool.run({"a": 2}).observation, tool.run({"b": 2}).error.splitlines()[0]
        ('3', "invalid arguments for tool 'add': a: Field required")
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None | _Unset = _UNSET,
        max_chars: int | _Unset = _UNSET,
    ) -> None:
        if isinstance(func, Tool):
            self._copy_of(func, name=name, description=description, timeout=timeout, max_chars=max_chars)
            return
        timeout = DEFAULT_TIMEOUT if isinstance(timeout, _Unset) else timeout
        max_chars = DEFAULT_MAX_CHARS if isinstance(max_chars, _Unset) else max_chars
        if not callable(func):
            raise ConfigError(f"a Tool wraps a function, got {type(func).__name__}: {func!r:.80}")
        self.func: Callable[..., Any] = func
        self.name: str = _checked_name(name or str(getattr(func, "__name__", "")))
        summary, arg_docs = _parse_docstring(inspect.getdoc(func) or "")
        self.description = description if description is not None else summary
        self.timeout, self.max_chars = _limits(timeout, max_chars)
        target = func if inspect.isfunction(func) or inspect.ismethod(func) else getattr(func, "__call__", func)  # noqa: B004
        self.is_async = inspect.iscoroutinefunction(target)
        self.args_model = _args_model(func, self.name, arg_docs)

    def _copy_of(
        self,
        tool: Tool,
        *,
        name: str | None,
        description: str | None,
        timeout: float | None | _Unset,
        max_chars: int | _Unset,
    ) -> None:
        """Become a copy of ``tool`` (of its class, so a schema tool validates as it does), with the overrides."""
        self.__class__ = type(tool)
        self.__dict__.update(vars(tool))
        if inspect.ismethod(tool.func) and tool.func.__self__ is tool:  # an MCP tool's call: reads this copy's timeout
            self.func = types.MethodType(tool.func.__func__, self)
        if name is not None and name != tool.name:
            self.name = _checked_name(name)  # the argument schema stays the wrapped tool's
        if description is not None:
            self.description = description
        self.timeout, self.max_chars = _limits(
            tool.timeout if isinstance(timeout, _Unset) else timeout,
            tool.max_chars if isinstance(max_chars, _Unset) else max_chars,
        )

    @classmethod
    def from_mcp(cls, server: Any, name: str) -> Tool:
        """The tool ``name`` of an MCP server (an :class:`oobleck.MCPServer`; see :mod:`oobleck.tool_mcp`)."""
        from oobleck.tool_mcp import MCPServer

        if not isinstance(server, MCPServer):
            raise ConfigError(f"Tool.from_mcp takes an oobleck.MCPServer, got {type(server).__name__}")
        return server.tool(name)

    @property
    def args_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (an object; unknown keys are refused)."""
        return _types.json_schema(self.args_model)

    def spec(self) -> dict[str, Any]:
        """Name, description and argument schema: what an artifact stores (never code)."""
        return {"name": self.name, "description": self.description, "args": self.args_schema}

    def describe(self) -> str:
        """One line for a prompt: the name, the description and each argument's type and use.

        Example:
            >>> def search(query: str, k: int = 3) -> str:
            ...     '''Search the web.
            ...
            ...     Args:
            ...         query: what to look for.
            ...     '''
            >>> Tool(search).describe()
            'search: Search the web. Arguments: query (string): what to look for; k (integer, default 3).'
        """
        schema = self.args_schema
        parts = []
        for name, prop in schema.get("properties", {}).items():
            kind = _kind(prop, schema.get("$defs", {}))
            if "default" in prop:
                kind += f", default {json.dumps(prop['default'], ensure_ascii=False)}"
            desc = prop.get("description")
            parts.append(f"{name} ({kind})" + (f": {desc.rstrip('.')}" if desc else ""))
        args = "; ".join(parts) if parts else "none"
        return f"{self.name}: {self.description} Arguments: {args}."

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    # ---- calling ----

    def validate(self, args: Mapping[str, Any] | pydantic.BaseModel | None) -> dict[str, Any]:
        """The arguments checked and converted to the annotated types (a dict for the call).

        Raises:
            pydantic.ValidationError: the arguments do not fit the schema.
        """
        if isinstance(args, pydantic.BaseModel):
            args = args.model_dump(by_alias=True)  # validated again below, by the schema's names
        model = self.args_model.model_validate(arguments(args))
        return {name: getattr(model, name) for name in type(model).model_fields}

    def __call__(self, **kwargs: Any) -> Any:
        """Call the function directly (no validation, timeout or conversion to text)."""
        result = self.func(**kwargs)
        return asyncio.run(_awaited(result)) if inspect.isawaitable(result) else result

    def run(self, args: Mapping[str, Any] | pydantic.BaseModel | None) -> ToolResult:
        """Call the tool with ``args`` and return what the model should see; never raises.

        Raises:
            BudgetExceededError: the tool itself called an LM past the active budget.
        """
        with callbacks.step("tool", self.name, self, {"args": args}) as watched:
            result = self._run(args)
            watched.done(result)
        return result

    def _run(self, args: Mapping[str, Any] | pydantic.BaseModel | None) -> ToolResult:
        started = time.perf_counter()
        try:
            values = self.validate(args)
        except pydantic.ValidationError as exc:
            return self._failed(self._invalid(exc), started)
        try:
            result = _in_thread(self._call_sync, values, self.timeout)
        except BudgetExceededError:
            raise
        except _Overran:
            return self._failed(f"tool {self.name!r} timed out after {self.timeout:g} s", started)
        except Exception as exc:  # a TimeoutError the tool raised itself included
            return self._failed(self._raised(exc), started)
        return self._done(result, started)

    async def arun(self, args: Mapping[str, Any] | pydantic.BaseModel | None) -> ToolResult:
        """The async form of :meth:`run` (an async tool runs on the caller's event loop)."""
        with callbacks.step("tool", self.name, self, {"args": args}) as watched:
            result = await self._arun(args)
            watched.done(result)
        return result

    async def _arun(self, args: Mapping[str, Any] | pydantic.BaseModel | None) -> ToolResult:
        started = time.perf_counter()
        try:
            values = self.validate(args)
        except pydantic.ValidationError as exc:
            return self._failed(self._invalid(exc), started)
        task = asyncio.ensure_future(self._acall(values))
        try:
            # asyncio.wait, not wait_for: a TimeoutError the tool raises itself is its error, not ours
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
            if not done:
                return self._failed(f"tool {self.name!r} timed out after {self.timeout:g} s", started)
            result = task.result()
        except BudgetExceededError:
            raise
        except Exception as exc:
            return self._failed(self._raised(exc), started)
        finally:
            task.cancel()  # timed out, or this call was cancelled: the tool's task ends with it
        return self._done(result, started)

    async def _acall(self, values: dict[str, Any]) -> Any:
        try:
            if self.is_async:
                result = self.func(**values)
            else:
                loop = asyncio.get_running_loop()
                future: asyncio.Future[Any] = loop.create_future()
                _start_thread(lambda: self.func(**values), future, loop)
                result = await future
            # a sync callable may still return an awaitable (a partial of an async function, a decorator)
            return await result if inspect.isawaitable(result) else result
        except SystemExit as exc:
            raise _Exited(exc.code) from None

    def _call_sync(self, values: dict[str, Any]) -> Any:
        try:
            result = self.func(**values)
            if inspect.isawaitable(result):  # an async tool called from sync code: its own loop
                return asyncio.run(_awaited(result))
            return result
        except SystemExit as exc:
            raise _Exited(exc.code) from None

    def _raised(self, exc: Exception) -> str:
        kind = "SystemExit" if isinstance(exc, _Exited) else type(exc).__name__
        return f"tool {self.name!r} raised {kind}: {exc}"

    def _invalid(self, exc: pydantic.ValidationError) -> str:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        schema = json.dumps(self.args_schema.get("properties", {}), ensure_ascii=False, sort_keys=True)
        return f"invalid arguments for tool {self.name!r}: {problems}\nexpected arguments: {schema}"

    def _failed(self, error: str, started: float) -> ToolResult:
        observation, cut = _truncate(f"Error: {error}", self.max_chars)
        return ToolResult(observation, error=error, seconds=time.perf_counter() - started, truncated=cut)

    def _done(self, result: Any, started: float) -> ToolResult:
        observation, cut = _truncate(to_text(result), self.max_chars)
        return ToolResult(observation, seconds=time.perf_counter() - started, truncated=cut)


def _checked_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}", name) or name == "finish":
        raise ConfigError(
            f"a tool name must be 1-64 letters, digits, '_' or '-' (not starting with a digit) and not "
            f"'finish' (the agent's own action), got {name!r}; pass Tool(func, name=...)"
        )
    return name


def _limits(timeout: float | None, max_chars: int) -> tuple[float | None, int]:
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds or None, got {timeout!r}")
    if max_chars < 1:
        raise ConfigError(f"max_chars must be >= 1, got {max_chars!r}")
    return timeout, max_chars


def arguments(args: Mapping[str, Any] | None) -> Any:
    """``args`` as a dict to validate (None: no arguments); anything else is left for pydantic to refuse."""
    if args is None:
        return {}
    return dict(args) if isinstance(args, Mapping) else args


def _kind(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """A short type name for an argument's schema (``string``, ``one of "a", "b"``, ``object``)."""
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"], ensure_ascii=False)
    if "$ref" in prop:
        target = defs.get(str(prop["$ref"]).rsplit("/", 1)[-1], {})
        keys = list(target.get("properties", {})) if isinstance(target, Mapping) else []
        return "object with " + ", ".join(keys) if keys else "object"
    for key in ("anyOf", "oneOf"):
        if key in prop and isinstance(prop[key], list):
            return " or ".join(_kind(p, defs) for p in prop[key] if isinstance(p, Mapping))
    kind = prop.get("type", "any")
    if kind == "array" and isinstance(prop.get("items"), Mapping):
        return f"list of {_kind(prop['items'], defs)}"
    return str(kind)


def to_text(value: Any) -> str:
    """A tool's result as text for the model.

    Strings as they are, pydantic models, dicts, lists, sets (sorted) and numbers as JSON,
    anything else as its ``repr`` (or its type name when even that fails).

    Example:
        >>> to_text("hi"), to_text({"a": [1, 2]}), to_text(None)
        ('hi', '{"a": [1, 2]}', 'null')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        value = _types.stable_order(value)  # a set as a sorted list: the same text in every process
    if value is None or isinstance(value, (dict, list, tuple, int, float, bool)):
        try:
            return json.dumps(_types.to_jsonable(value), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            pass
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _truncate(text: str, limit: int) -> tuple[str, int]:
    if len(text) <= limit:
        return text, 0
    cut = len(text) - limit
    return f"{text[:limit]}\n[... truncated: {cut} of {len(text)} characters cut]", cut


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _start_thread(work: Callable[[], Any], future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
    """Run ``work`` in a daemon thread (context copied) and settle ``future`` on ``loop``."""
    ctx = contextvars.copy_context()

    def settle(value: Any, exc: BaseException | None) -> None:
        if future.done():
            return  # timed out and cancelled meanwhile
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def target() -> None:
        try:
            value, exc = ctx.run(work), None
        except BaseException as e:  # handed to the caller, which decides
            value, exc = None, e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, value, exc)

    threading.Thread(target=target, name="oobleck-tool", daemon=True).start()


class _Exited(Exception):
    """A tool raised SystemExit (argparse does on arguments it cannot read): its error, not the program's end."""


class _Overran(Exception):
    """A tool ran past its timeout (told apart from a TimeoutError the tool raised itself)."""


def _in_thread(work: Callable[[dict[str, Any]], Any], values: dict[str, Any], timeout: float | None) -> Any:
    """``work(values)`` in a daemon thread (context copied), waiting at most ``timeout`` seconds.

    Raises:
        _Overran: it did not finish in time (the thread is left to finish on its own).
    """
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = ctx.run(work, values)
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="oobleck-tool", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _Overran
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _args_model(func: Callable[..., Any], name: str, docs: Mapping[str, str]) -> type[pydantic.BaseModel]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read the parameters of tool {name!r}: {exc}") from None
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # forward references that do not resolve: fall back to the raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(
                f"tool {name!r} takes *{pname}; a tool's arguments must be named parameters (the model "
                "fills a JSON object of them). Wrap it in a function with named, annotated parameters"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ConfigError(f"tool {name!r}: parameter {pname!r} is positional-only; tools are called by name")
        annotation = hints.get(pname, param.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, pydantic.Field(default, description=docs.get(pname) or None))
    model_name = "".join(part.title() for part in re.split(r"[_\-]+", name) if part) + "Args"
    try:
        model = pydantic.create_model(model_name or "Args", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
        model.model_json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError, NameError) as exc:
        raise ConfigError(
            f"tool {name!r}: its annotations cannot be turned into a JSON schema ({exc}); annotate the "
            "parameters with JSON types (str, int, float, bool, Literal, Optional, list, dict, pydantic models)"
        ) from None
    return model  # type: ignore[no-any-return]


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Example|Examples|Note|Notes):\s*$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph and the ``Args:`` descriptions of a Google-style docstring."""
    lines = doc.strip().splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line.strip()):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    in_args, current, indent = False, None, None
    for line in lines:
        stripped = line.strip()
        if _SECTION.match(stripped):
            in_args, current, indent = stripped.split(":")[0] in ("Args", "Arguments", "Parameters"), None, None
            continue
        if not in_args or not stripped:
            continue
        width = len(line) - len(line.lstrip())
        match = re.match(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
        if match and (indent is None or width <= indent):
            indent = width
            current = match.group(1).lstrip("*")
            args[current] = match.group(3).strip()
        elif current is not None and indent is not None and width > indent:
            args[current] = f"{args[current]} {stripped}".strip()
        else:
            in_args = False
    return " ".join(summary), args


def ensure_tools(tools: Sequence[Tool | Callable[..., Any]]) -> dict[str, Tool]:
    """Tools by name, functions wrapped in :class:`Tool`.

    Raises:
        ConfigError: two tools share a name, or an item is not a function or Tool.
    """
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ConfigError(f"tools must be a list of functions or Tools, got {type(tools).__name__}")
    out: dict[str, Tool] = {}
    for item in tools:
        tool = item if isinstance(item, Tool) else Tool(item)
        if tool.name in out:
            raise ConfigError(f"two tools are named {tool.name!r}; give one another name with Tool(func, name=...)")
        out[tool.name] = tool
    return out


_BOUND: contextvars.ContextVar[dict[str, Tool] | None] = contextvars.ContextVar("oobleck_bound_tools", default=None)


@contextlib.contextmanager
def binding(tools: Sequence[Tool | Callable[..., Any]] | None) -> Iterator[None]:
    """Make ``tools`` the ones a module being loaded binds (``oobleck.load(path, tools=...)``)."""
    token = _BOUND.set(ensure_tools(tools) if tools is not None else None)
    try:
        yield
    finally:
        _BOUND.reset(token)


def bound_tools() -> dict[str, Tool] | None:
    """The tools given to the load in progress (None: the load was given none)."""
    return _BOUND.get()
