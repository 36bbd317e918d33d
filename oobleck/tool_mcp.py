"""Tools from an MCP server: list a server's tools as :class:`~oobleck.Tool` objects and call them.

An :class:`MCPServer` connects to one server, over stdio (a command it starts as a subprocess)
or streamable HTTP (a URL), with the optional ``mcp`` package (``pip install 'oobleck[mcp]'``,
imported only here). The MCP client is async; so that the sync :meth:`Tool.run` works anywhere,
the server object owns a background thread running an event loop that holds the session, and
each call is submitted to that loop. Close the server when done (``close()``, or use it as a
context manager); the subprocess of a stdio server ends with it.

Each listed tool keeps the server's name (characters a tool name may not hold become ``_``),
its description and its ``inputSchema``, rebuilt as the tool's argument model, so ReAct's
constrained action follows the server's schema and arguments are checked before the call. Only
the arguments the model wrote are sent (a schema default is the server's to apply). A call the
server reports as an error (``isError``), a timeout or a lost connection comes back to the
agent as an observation, like any failing tool.

Example (not run here: it starts a server)::

    with oobleck.MCPServer(command=["python", "server.py"]) as server:
        agent = oobleck.ReAct("question -> answer", tools=server.tools())
        agent(question="...")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from oobleck._tool_schema import SchemaTool
from oobleck.errors import ConfigError, ToolError
from oobleck.tool import DEFAULT_MAX_CHARS, DEFAULT_TIMEOUT, Tool

__all__ = ["MCPServer", "MCPTool", "mcp_tools"]

#: Seconds to wait for a server to start and answer ``initialize`` and ``tools/list``.
CONNECT_TIMEOUT = 60.0
#: The most pages of ``tools/list`` read from one server.
MAX_PAGES = 100


def _require_mcp() -> Any:
    try:
        import mcp
    except ImportError as exc:
        raise ConfigError(
            f"tools from an MCP server need the optional 'mcp' package, which is not installed ({exc}); "
            "install it with: pip install 'oobleck[mcp]'"
        ) from None
    return mcp


class MCPServer:
    """A connection to one MCP server, whose tools an agent may call.

    Give either ``command`` (stdio: the server is started as a subprocess) or ``url``
    (streamable HTTP). Nothing connects until :meth:`connect`, ``with``, or :meth:`tools`.

    Args:
        command: the program and its arguments, e.g. ``["python", "server.py"]`` (a string is
            one program without arguments).
        env: the subprocess's environment (default: the ``mcp`` package's safe default).
        cwd: the subprocess's working directory.
        url: the server's streamable HTTP endpoint, e.g. ``http://127.0.0.1:8000/mcp``.
        headers: HTTP headers sent with every request (e.g. an authorization token).
        timeout: seconds one tool call may take (None: no limit); the tools' default.
        max_chars: the longest observation a tool returns; longer results are cut.
        connect_timeout: seconds to wait for the server to start and answer.

    Raises:
        ConfigError: the ``mcp`` package is missing, or not exactly one of ``command`` and
            ``url`` is given.
    """

    def __init__(
        self,
        *,
        command: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_chars: int = DEFAULT_MAX_CHARS,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        _require_mcp()
        if (command is None) == (url is None):
            raise ConfigError(
                "MCPServer needs exactly one of command=[program, *args] (stdio) or url='http://.../mcp' "
                f"(streamable HTTP), got command={command!r}, url={url!r}"
            )
        argv = [command] if isinstance(command, str) else list(command or [])
        if command is not None and (not argv or not all(isinstance(a, str) and a for a in argv)):
            raise ConfigError(f"command must be a program and its arguments (non-empty strings), got {command!r}")
        if url is not None and not re.match(r"^https?://", url):
            raise ConfigError(f"url must be an http:// or https:// address, got {url!r}")
        self.command = argv or None
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.max_chars = max_chars
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[Any] | None = None
        self._session: Any = None
        self._specs: list[dict[str, Any]] | None = None
        self._failure: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        where = " ".join(self.command) if self.command else self.url
        return f"MCPServer({where!r})"

    # ---- life cycle ----

    def connect(self) -> MCPServer:
        """Start the session (once) and list the server's tools.

        Raises:
            ToolError: the server could not be started or reached, or did not answer in time.
        """
        with self._lock:
            if self._closed:
                raise ToolError(f"{self!r} is closed; create a new MCPServer to connect again")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="oobleck-mcp", daemon=True)
                self._thread.start()
        if not self._ready.wait(self.connect_timeout):
            self.close()
            raise ToolError(f"{self!r} did not answer within {self.connect_timeout:g} s; is it an MCP server?")
        if self._failure is not None or self._specs is None:
            raise ToolError(
                f"could not connect to {self!r}: {self._failure}; check that the command starts an MCP "
                "server (it must speak MCP on stdin/stdout) or that the URL is its MCP endpoint"
            )
        return self

    def close(self) -> None:
        """End the session (and a stdio server's subprocess); idempotent."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(self._end)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)

    def _end(self) -> None:
        """On the session's loop: stop a session, or cancel one still connecting.

        A server that never answers ``initialize`` would otherwise keep the session (and its
        subprocess) waiting after :meth:`connect` gave up on it.
        """
        if self._session is None and self._task is not None:
            self._task.cancel()
        elif self._stop is not None:
            self._stop.set()

    def __enter__(self) -> MCPServer:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by connect()
            self._failure = self._failure or _describe(exc)
        finally:
            self._session = None
            self._ready.set()

    async def _main(self) -> None:
        mcp = _require_mcp()
        with self._lock:  # close() reads these under the lock
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._task = asyncio.current_task()
            if self._closed:  # close() came before there was a loop to tell
                self._failure = "closed before it connected"
                return
        try:
            async with contextlib.AsyncExitStack() as stack:
                streams = await stack.enter_async_context(await self._transport(stack))
                session = await stack.enter_async_context(mcp.ClientSession(streams[0], streams[1]))
                await session.initialize()
                self._specs = await _list_tools(session)
                self._session = session
                self._ready.set()
                if not self._closed:  # close() may have come while connecting, before _stop existed
                    await self._stop.wait()
        except BaseException as exc:
            self._failure = _describe(exc)
        finally:
            self._session = None

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        if self.command is not None:
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(command=self.command[0], args=self.command[1:], env=self.env, cwd=self.cwd)
            return stdio_client(params, errlog=_errlog(stack))
        from mcp.client import streamable_http

        assert self.url is not None
        modern = getattr(streamable_http, "streamable_http_client", None)
        if modern is not None:  # mcp >= 2: headers go on the HTTP client
            client = getattr(streamable_http, "create_mcp_http_client")(headers=self.headers or None)  # noqa: B009
            await stack.enter_async_context(client)
            return modern(self.url, http_client=client)
        legacy = getattr(streamable_http, "streamablehttp_client")  # noqa: B009  # mcp 1.x
        return legacy(self.url, headers=self.headers or None)

    # ---- tools ----

    def tools(self, names: Sequence[str] | None = None) -> list[Tool]:
        """The server's tools (connecting first if needed), all or those named.

        Raises:
            ToolError: the server could not be reached.
            ConfigError: a name the server does not offer, or a tool whose name or schema
                cannot be used.
        """
        self.connect()
        specs = self._specs or []
        by_name = {str(s.get("name")): s for s in specs}
        if names is not None:
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise ConfigError(f"{self!r} has no tool(s) {unknown}; it offers {sorted(by_name)}")
            specs = [by_name[n] for n in names]
        return [MCPTool(self, spec, timeout=self.timeout, max_chars=self.max_chars) for spec in specs]

    def tool(self, name: str) -> Tool:
        """The server's tool called ``name`` (see :meth:`tools`)."""
        return self.tools([name])[0]

    def call(self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None) -> str:
        """Call tool ``name`` on the server and return its result as text.

        Raises:
            ToolError: the server reported an error, the session is closed or lost.
            TimeoutError: no answer within ``timeout`` seconds (the call is cancelled).
        """
        loop, session = self._loop, self._session
        if loop is None or session is None or loop.is_closed():
            raise ToolError(f"the session with {self!r} is closed ({self._failure or 'closed by the program'})")
        future = asyncio.run_coroutine_threadsafe(session.call_tool(name, dict(arguments)), loop)
        try:
            result = future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{name!r} timed out after {timeout:g} s with no answer from {self!r}") from None
        except concurrent.futures.CancelledError:
            raise ToolError(f"the call to {name!r} was cancelled: the session with {self!r} ended") from None
        except Exception as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from None
        return _result_text(name, result)


def _errlog(stack: contextlib.AsyncExitStack) -> Any:
    """Where a stdio server's stderr goes: ours, else the process's own, else nowhere.

    ``sys.stderr`` has no file descriptor in a notebook or under captured output.
    """
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    return stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115 - closed with the session


async def _list_tools(session: Any) -> list[dict[str, Any]]:
    from mcp import types

    specs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        if cursor is None:
            page = await session.list_tools()
        else:
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
        data = page.model_dump(mode="json", by_alias=True, exclude_none=True)
        specs.extend(t for t in data.get("tools", []) if isinstance(t, dict))
        cursor = data.get("nextCursor")
        if not cursor:
            break
    return specs


def _result_text(name: str, result: Any) -> str:
    """A ``CallToolResult`` as text: its text parts, else its structured content as JSON."""
    data = result.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(result, "model_dump") else {}
    parts: list[str] = []
    for item in data.get("content") or []:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append(str(item.get("text", "")))
        elif kind == "resource" and isinstance(item.get("resource"), dict):
            resource = item["resource"]
            parts.append(str(resource.get("text") or f"[resource {resource.get('uri')}]"))
        elif kind == "resource_link":
            parts.append(f"[resource {item.get('uri')}]")
        elif kind:
            parts.append(f"[{kind} content ({item.get('mimeType', 'unknown type')}) not shown]")
    text = "\n".join(parts)
    if not text and data.get("structuredContent") is not None:
        text = json.dumps(data["structuredContent"], ensure_ascii=False)
    if data.get("isError"):
        raise ToolError(text or f"the server reported an error calling {name!r} and said nothing more")
    return text


def _describe(exc: BaseException) -> str:
    """An exception (or an exception group's innermost ones) in one line."""
    inner = getattr(exc, "exceptions", None)
    if inner:
        return "; ".join(_describe(e) for e in inner[:3])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class MCPTool(SchemaTool):
    """One tool of an MCP server, called through its :class:`MCPServer`.

    Built by :meth:`MCPServer.tools`; its argument model is the server's ``inputSchema``.

    Attributes:
        server: the server that runs it.
        remote_name: its name on the server (``name`` is the same with characters a tool name
            may not hold replaced by ``_``).
        input_schema: the server's ``inputSchema``, as listed.
    """

    def __init__(
        self,
        server: MCPServer,
        spec: Mapping[str, Any],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        remote = str(spec.get("name") or "")
        schema = spec.get("inputSchema")
        if not isinstance(schema, dict):
            raise ConfigError(f"MCP tool {remote!r} has no inputSchema object: {str(schema)[:100]}")
        self.server = server
        self.remote_name = remote
        self.input_schema = schema
        description = spec.get("description") or spec.get("title") or remote
        super().__init__(
            self._call, name=remote, description=str(description), schema=schema, timeout=timeout, max_chars=max_chars
        )

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r}, server={self.server!r})"

    def _call(self, /, **arguments: Any) -> str:  # positional-only: an argument may be named "self"
        return self.server.call(self.remote_name, arguments, timeout=self.timeout)


def mcp_tools(server: MCPServer, names: Sequence[str] | None = None) -> list[Tool]:
    """The tools of ``server`` (all, or those named), ready for ``ReAct(tools=...)``.

    The same as ``server.tools(names)``; close the server when the agent is done.
    """
    return server.tools(names)
