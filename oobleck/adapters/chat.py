"""The chat adapter: fields introduced by ``[[ ## name ## ]]`` markers.

The completion is read by splitting at markers. A value that itself contains marker-like
text is escaped with a backslash when oobleck writes it (in demos) and unescaped when read,
so rendering then parsing gives back exactly the values that went in (modulo surrounding
whitespace, which is stripped). Small models often drop the markers: with a single output
field, an answer without any marker is read whole, and a Literal/Enum label is found in the
text when exactly one of the labels appears in it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import pydantic

from oobleck import _types
from oobleck.adapters._partial import chat_fields
from oobleck.adapters._values import format_value
from oobleck.adapters.base import DemoTurns, bounded_parse, describe_fields, type_hint
from oobleck.errors import ParseError
from oobleck.lm.base import Capabilities
from oobleck.lm.types import Message
from oobleck.signature import Signature

__all__ = ["ChatAdapter"]

# A field name is any Python identifier, combining marks included (which ``\w`` misses).
_MARKER = re.compile(r"(?<!\\)\[\[ ## ([^\s\[\]#]+) ## \]\]")
_ESCAPABLE = re.compile(r"(\\*)(\[\[ ## )")
_ESCAPED = re.compile(r"\\(\\*)(\[\[ ## )")
COMPLETED = "[[ ## completed ## ]]"


def marker(name: str) -> str:
    """The marker line that introduces field ``name``."""
    return f"[[ ## {name} ## ]]"


def escape(text: str) -> str:
    """Escape marker-like text inside a value (reversible with :func:`unescape`)."""
    return _ESCAPABLE.sub(lambda m: "\\" + m.group(1) + m.group(2), text)


def unescape(text: str) -> str:
    """Undo :func:`escape`."""
    return _ESCAPED.sub(lambda m: m.group(1) + m.group(2), text)


def format_fields(values: Mapping[str, Any], types: Mapping[str, Any] | None = None) -> str:
    """Write ``values`` as marker sections (types decide raw text versus JSON)."""
    parts = []
    for name, value in values.items():
        tp = (types or {}).get(name, str if isinstance(value, str) else object)
        parts.append(f"{marker(name)}\n{escape(format_value(tp, value))}")
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=256)
def input_types(signature: Signature) -> dict[str, Any]:
    """Input field types by name (cached: signatures are immutable)."""
    return {f.name: f.type for f in signature.input_fields.values()}


@functools.lru_cache(maxsize=256)
def _reminder(signature: Signature) -> str:
    # Small models copy whatever marker they see last; naming the end marker here makes
    # SmolLM2 answer with nothing but it, so the reminder names only the output fields.
    names = [marker(n) for n in signature.output_fields]
    if len(names) == 1:
        return f"\n\nRespond with {names[0]} and its value."
    return f"\n\nRespond with {', '.join(names)}, each followed by its value."


class ChatAdapter(DemoTurns):
    """Field markers in plain chat messages; works on any chat backend.

    Example:
        >>> from oobleck import Signature
        >>> msgs = ChatAdapter().render(Signature("question -> answer"), demos=[], inputs={"question": "hi"})
        >>> msgs[-1].content.splitlines()[0]
        '[[ ## question ## ]]'
    """

    name = "chat"
    version = "1"

    @functools.lru_cache(maxsize=256)  # noqa: B019 - adapters are few and long-lived
    def system_message(self, signature: Signature) -> Message:
        """Instructions, fields, and the marker layout of the answer."""
        return Message(role="system", content=self._system(signature))

    def _system(self, signature: Signature) -> str:
        layout = "\n\n".join(f"{marker(f.name)}\n<{f.name}: {type_hint(f)}>" for f in signature.output_fields.values())
        return (
            f"{signature.instructions}\n\n{describe_fields(signature)}\n\n"
            f"Answer with every output field after its marker, in this order:\n\n{layout}\n\n{COMPLETED}"
        )

    def user_text(self, signature: Signature, values: Mapping[str, Any], *, last: bool) -> str:
        """The input fields as marker sections; the call's own inputs end with a reminder."""
        shown = {k: values[k] for k in signature.input_fields if k in values}
        text = format_fields(shown, input_types(signature))
        if last:
            text += _reminder(signature)
        return text

    def request_options(self, signature: Signature, capabilities: Capabilities) -> dict[str, Any]:
        """Stop at the completion marker: the rest would be wasted tokens."""
        return {"stop": (COMPLETED,)}

    def format_outputs(self, signature: Signature, values: Mapping[str, Any]) -> str:
        """Marker sections for the given output values."""
        types = {f.name: f.type for f in signature.output_fields.values()}
        return format_fields(values, types)

    @bounded_parse
    def parse(self, signature: Signature, text: str) -> dict[str, Any]:
        """Read each output field's section and validate it against the field's type.

        Raises:
            ParseError: a field is missing or its text does not fit its type.
        """
        outputs = signature.output_fields
        sections: dict[str, str] = {}
        matches = [m for m in _MARKER.finditer(text) if m.group(1).isidentifier()]
        for i, m in enumerate(matches):
            name = m.group(1)
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            if name in outputs and name not in sections:
                sections[name] = unescape(text[m.end() : end].strip())
        if not matches and len(outputs) == 1:
            sections[next(iter(outputs))] = text.strip()
        values: dict[str, Any] = {}
        for name, field in outputs.items():
            if name not in sections:
                raise ParseError(
                    f"the answer has no {marker(name)} section for output field {name!r} "
                    f"(signature {signature}); answer was: {text[:200]!r}",
                    raw=text,
                    field=name,
                    signature=signature,
                    reason=f"missing field {name}",
                )
            values[name] = _parse_field(signature, field.name, field.type, sections[name], text)
        return values

    def partial_fields(self, signature: Signature, text: str, *, final: bool = False) -> dict[str, str]:
        """Each output field's text so far in a completion still arriving (for streaming).

        The text after each field's marker, as :meth:`parse` reads it, minus what may still
        change (the start of a marker, trailing whitespace); see :mod:`oobleck.adapters._partial`.
        """
        return chat_fields(signature, text, final=final)

    def repair_messages(self, signature: Signature, raw: str, reason: str) -> list[Message]:
        """Show the unreadable answer and ask again with the exact layout."""
        layout = "\n\n".join(f"{marker(f.name)}\n<{type_hint(f)}>" for f in signature.output_fields.values())
        return [
            Message(role="assistant", content=raw),
            Message(
                role="user",
                content=f"That answer could not be read ({reason}). Answer again in exactly this layout:\n\n"
                f"{layout}\n\n{COMPLETED}",
            ),
        ]


def _parse_field(signature: Signature, name: str, tp: Any, section: str, raw: str) -> Any:
    try:
        return _types.parse_text(tp, section)
    except (pydantic.ValidationError, ValueError) as exc:
        label = _find_single_label(tp, section)
        if label is not None:
            return _types.validate(tp, label)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParseError(
            f"output field {name!r} should be {_types.type_to_str(tp)} but the answer gave {section[:120]!r} "
            f"({reason})",
            raw=raw,
            field=name,
            signature=signature,
            reason=reason,
        ) from exc


def _find_single_label(tp: Any, text: str) -> Any:
    """The one label of a Literal/Enum that the text names, else None (never a guess).

    First a label appearing as a whole word; failing that, a near miss in the first word
    ("numerical" for "numeric", "pos" for "positive"): small models write both.
    """
    labels = [c for c in _types.literal_choices(tp) or () if isinstance(c, str)]
    if not labels:
        return None
    found = {c for c in labels if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", text, re.IGNORECASE)}
    if len(found) == 1:
        return found.pop()
    if found:
        return None
    words = re.findall(r"\w+", text.lower())
    if not words or len(words[0]) < 3:
        return None
    first = words[0]
    near = {c for c in labels if first.startswith(c.lower()) or c.lower().startswith(first)}
    return near.pop() if len(near) == 1 else None
