"""Reading output fields from a completion that is still arriving (for streaming).

Each function takes the completion's text so far and returns the text of each output field
that can no longer change, in the order the fields appear. Called again with more text, every
field's text is the earlier one extended: the caller sends the difference. Text that might
still turn into something else is held back (the start of a marker, a backslash that may
escape one, trailing whitespace that parse would strip, half a JSON escape, a number that may
have more digits). With ``final=True`` the text is complete and nothing is held back.
"""

from __future__ import annotations

import json
import re

from oobleck.signature import Signature

__all__ = ["chat_fields", "json_fields"]

_MARKER = re.compile(r"(?<!\\)\[\[ ## ([^\s\[\]#]+) ## \]\]")
_ESCAPED = re.compile(r"\\(\\*)(\[\[ ## )")
_ESCAPE_AT_END = re.compile(r"\\+\[\[ ##$")
_NAME = re.compile(r"[^\s\[\]#]*")
_OPEN = "[[ ## "
_CLOSE = " ## ]]"


def _could_open_marker(tail: str) -> bool:
    """Whether ``tail`` (the end of the text so far) may be the start of a marker."""
    if len(tail) <= len(_OPEN):
        return _OPEN.startswith(tail)
    if not tail.startswith(_OPEN):
        return False
    rest = tail[len(_OPEN) :]
    end = _NAME.match(rest).end()  # type: ignore[union-attr]  # matches the empty string at least
    if end == len(rest):
        return True
    return end > 0 and _CLOSE.startswith(rest[end:])


def _settled_end(text: str) -> int:
    """Where the text that can no longer become part of a marker ends."""
    cut = len(text)
    for i in range(max(0, len(text) - 80), len(text)):
        if text[i] == "[" and _could_open_marker(text[i:]):
            cut = i
            break
    while cut > 0 and text[cut - 1] == "\\":  # it may escape the marker that follows
        cut -= 1
    return cut


def chat_fields(signature: Signature, text: str, *, final: bool) -> dict[str, str]:
    """The settled text of each output field in a ``[[ ## name ## ]]`` answer so far.

    A field's text is what :meth:`ChatAdapter.parse` reads for it (stripped, unescaped). With
    one output field and no marker at all, the answer is read whole, but only once it is
    complete: until then a marker may still come.
    """
    outputs = signature.output_fields
    seen = text if final else text[: _settled_end(text)]
    matches = [m for m in _MARKER.finditer(seen) if m.group(1).isidentifier()]
    fields: dict[str, str] = {}
    for i, m in enumerate(matches):
        name = m.group(1)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(seen)
        if name in outputs and name not in fields:
            section = seen[m.end() : end].strip()
            if not final and i == len(matches) - 1:
                # Stripped, an escaped marker at the end has lost the space that makes it one
                # (parse unescapes it only when more text follows): wait for that text.
                section = _ESCAPE_AT_END.sub("", section).rstrip()
            fields[name] = _ESCAPED.sub(lambda e: e.group(1) + e.group(2), section)
    if final and not matches and len(outputs) == 1:
        fields[next(iter(outputs))] = text.strip()
    return fields


_WS = " \t\r\n"
_HEX = frozenset("0123456789abcdefABCDEF")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _string(text: str, pos: int) -> tuple[str, int, bool]:
    """The JSON string starting at ``text[pos] == '"'``, decoded as far as it is complete.

    Returns the decoded text, the position after it, and whether its closing quote came.
    """
    j = pos + 1
    safe = j
    while j < len(text):
        c = text[j]
        if c == '"':
            return _decode(text[pos + 1 : j]), j + 1, True
        if c == "\\":
            if j + 1 >= len(text):
                break
            if text[j + 1] == "u":
                digits = text[j + 2 : j + 6]
                if len(digits) < 4 or not set(digits) <= _HEX:
                    break
                if 0xD800 <= int(digits, 16) <= 0xDBFF and not re.match(
                    r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", text[j + 6 : j + 12]
                ):
                    break  # half of a surrogate pair: wait for the other half
                j += 12 if 0xD800 <= int(digits, 16) <= 0xDBFF else 6
            else:
                j += 2
            safe = j
            continue
        j += 1
        safe = j
    return _decode(text[pos + 1 : safe]), safe, False


def _decode(raw: str) -> str:
    try:
        value = json.loads(f'"{raw}"')
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def json_fields(signature: Signature, text: str, *, final: bool) -> dict[str, str]:
    """The settled text of each output field in a JSON-object answer so far.

    A string value streams as its decoded text while it arrives; any other value (number,
    list, object) is given whole, as the LM wrote it, once it is complete. Keys that are not
    output fields are skipped.
    """
    outputs = signature.output_fields
    fields: dict[str, str] = {}
    start = text.find("{")
    if start < 0:
        return fields
    decoder = json.JSONDecoder()
    pos = start + 1
    while True:
        pos = _skip(text, pos)
        if pos >= len(text) or text[pos] != '"':
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            return fields
        key, pos, closed = _string(text, pos)
        pos = _skip(text, pos)
        if not closed or pos >= len(text) or text[pos] != ":":
            return fields
        pos = _skip(text, pos + 1)
        if pos >= len(text):
            return fields
        if text[pos] == '"':
            value, pos, closed = _string(text, pos)
            if key in outputs and key not in fields:
                fields[key] = value
            if not closed:
                return fields
            continue
        try:
            _, end = decoder.raw_decode(text, pos)
        except ValueError:
            return fields
        after = _skip(text, end)
        if not final and (after >= len(text) or text[after] not in ",}"):
            return fields  # a number may have more digits to come
        if key in outputs and key not in fields:
            fields[key] = text[pos:end]
        pos = end
