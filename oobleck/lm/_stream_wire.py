"""Streamed chat completions: server-sent ``chat.completion.chunk`` events back into one answer.

OpenAI-compatible servers (and llama.cpp in-process) stream an answer as chunks whose
``choices[0].delta.content`` is the next piece of text; the last ones carry the
``finish_reason`` and, when asked with ``stream_options.include_usage``, the usage. A tool
call comes as ``delta.tool_calls`` pieces (its id and name, then its arguments in parts),
put back together by their ``index``. A
:class:`ChunkReader` hands each piece on as it comes and rebuilds the body a non-streamed call
would have returned, for :func:`oobleck.lm._chat_wire.from_dict` to read exactly as it reads
that one. A stream that stops before its answer finished is an LMConnectionError: half an
answer is never returned (or cached) as a whole one.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any

from oobleck.errors import LMConnectionError, LMResponseError
from oobleck.lm._chat_wire import _server_error

__all__ = ["STREAM_OPTIONS", "ChunkReader", "LineSplitter"]

#: Sent with a streamed request so the last chunk reports the tokens used.
STREAM_OPTIONS = {"include_usage": True}

_SSE_FIELDS = frozenset({"event", "id", "retry"})


class LineSplitter:
    """Cuts a body read in byte chunks into its lines, so the reader can watch the clock per chunk.

    Reading by lines (``iter_lines``) waits for each newline: a server trickling one long
    event holds the reader until it ends, whatever the deadline. Reading by chunks and
    splitting here hands on each finished line and leaves the caller free to look at the
    clock (and the size, in bytes) after every chunk.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def push(self, data: bytes) -> list[str]:
        """The lines ``data`` finished (without their line ends)."""
        # SSE lines end in CRLF, LF or CR (a CRLF cut between two chunks adds a blank line: harmless).
        self._pending += self._decoder.decode(data).replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._pending = self._pending.split("\n")
        return lines

    def end(self) -> list[str]:
        """The last line, when the body did not end with a newline."""
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [rest] if rest else []


class ChunkReader:
    """Reads one streamed chat completion, chunk by chunk.

    Args:
        where: the server, for error messages.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self._pieces: list[str] = []
        self._size = 0
        self._finish: str | None = None
        self._usage: dict[str, Any] = {}
        self._model = ""
        self._done = False
        self._calls: dict[int, dict[str, str]] = {}
        self._other: list[str] = []
        self._events = False

    @property
    def streamed(self) -> int:
        """How many characters of text have come so far."""
        return self._size

    def line(self, line: str) -> str:
        """Read one line of a server-sent-events body; the new text it carries ("" if none)."""
        line = line.strip()
        if not line.startswith("data:"):
            if line and not line.startswith(":") and line.split(":", 1)[0] not in _SSE_FIELDS:
                self._other.append(line)  # not an event: a server that ignored stream=true (see body)
            return ""  # blank lines, comments (": ping"), event:/id:/retry: fields
        self._events = True
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            self._done = True
            return ""
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise LMResponseError(
                f"expected a JSON chunk in the stream from {self.where}, got {data[:120]!r}", retryable=True
            ) from None
        return self.chunk(chunk)

    def feed(self, line: str, sink: Callable[[str], None]) -> int:
        """Read one line of the body and send its new text to ``sink``; the line's length in characters, newline included."""
        piece = self.line(line)
        if piece:
            sink(piece)  # may raise (the consumer stopped reading): the caller closes the body
        return len(line) + 1

    def chunk(self, chunk: Any) -> str:
        """Read one ``chat.completion.chunk`` object; the new text it carries ("" if none)."""
        if not isinstance(chunk, dict):
            raise LMResponseError(
                f"expected a chat.completion.chunk object in the stream from {self.where}, got {type(chunk).__name__}",
                retryable=True,
            )
        if "error" in chunk and "choices" not in chunk:
            raise _server_error(chunk["error"])
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            choices = []
        piece = ""
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                piece += content
            if isinstance(delta, dict) and delta.get("tool_calls") is not None:
                self._tool_call_pieces(delta["tool_calls"])
            if isinstance(choice.get("finish_reason"), str):
                self._finish = choice["finish_reason"]
        if piece:
            self._pieces.append(piece)
            self._size += len(piece)
        return piece

    def _tool_call_pieces(self, calls: Any) -> None:
        """Add one delta's ``tool_calls`` pieces to the calls they continue (by ``index``)."""
        if not isinstance(calls, list):
            raise LMResponseError(
                f"expected a tool_calls list in a chunk from {self.where}, got {type(calls).__name__}", retryable=True
            )
        for position, call in enumerate(calls):
            index = call.get("index", position) if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(index, int) or isinstance(index, bool):
                raise LMResponseError(
                    f"expected each streamed tool call from {self.where} to be an object with an integer index, "
                    f"got {str(call)[:120]!r}",
                    retryable=True,
                )
            entry = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if isinstance(call.get("id"), str):
                entry["id"] = call["id"]
            function = call.get("function")
            if isinstance(function, dict):
                for part in ("name", "arguments"):
                    if isinstance(function.get(part), str):
                        entry[part] += function[part]

    def body(self) -> dict[str, Any]:
        """The chat completion the stream spelled out, as a non-streamed call returns it.

        A server that ignores ``stream=true`` and sends the whole chat completion as JSON
        (some compatible servers and proxies do) is read as that body: nothing was streamed,
        and the answer is whole.

        Raises:
            LMConnectionError: the stream ended before the answer finished (no finish_reason
                and no ``[DONE]``): the server or the connection dropped it.
        """
        if not self._events and self._other:
            try:
                whole = json.loads("\n".join(self._other))
            except (ValueError, RecursionError):
                whole = None
            if isinstance(whole, dict):
                return whole  # read (and checked) by _chat_wire.from_dict as a plain call's body
        if self._finish is None and not self._done:
            raise LMConnectionError(
                f"the stream from {self.where} ended before the answer was complete ({self._size} characters "
                "in, no finish_reason): the server or the connection dropped it"
            )
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._pieces)}
        if self._calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for _, c in sorted(self._calls.items())
            ]
        return {
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish}],
            "usage": self._usage,
            "model": self._model,
        }
