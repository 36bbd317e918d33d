"""The adapter seam: turn (signature, demos, inputs) into chat messages and parse the answer back.

An adapter owns the whole prompt format, so the format is part of what a compiled program
records: its ``name``, ``version`` and ``options()`` go into artifacts and candidate keys, and
``name`` plus ``options()`` rebuild it (:func:`oobleck.adapters.adapter_from_name`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from oobleck import _types
from oobleck.errors import ParseError
from oobleck.lm.base import Capabilities
from oobleck.lm.types import Message
from oobleck.signature import Field, Signature

__all__ = ["Adapter", "DemoTurns", "StreamingAdapter", "bounded_parse", "demo_turns", "describe_fields"]


@runtime_checkable
class Adapter(Protocol):
    """Renders prompts for a signature and parses completions into typed fields."""

    name: str
    version: str

    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this adapter: ``type(a)(**a.options())``.

        Every setting that changes what is sent must be here, because artifacts save it and
        optimizers key candidates by it; JSON values only. Settings left at a default may be
        left out (an adapter without settings returns ``{}``).
        """
        ...

    def render(
        self,
        signature: Signature,
        *,
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[Message]:
        """The exact messages for one call."""
        ...

    def request_options(self, signature: Signature, capabilities: Capabilities) -> dict[str, Any]:
        """Extra request parameters (response_format, stop) for this signature on this backend."""
        ...

    def parse(self, signature: Signature, text: str) -> dict[str, Any]:
        """Typed output values from a completion; raises ParseError."""
        ...

    def format_outputs(self, signature: Signature, values: Mapping[str, Any]) -> str:
        """Write output values the way the LM is asked to (used for demos)."""
        ...

    def repair_messages(self, signature: Signature, raw: str, reason: str) -> list[Message]:
        """Messages that show the LM its unreadable answer and ask for a corrected one."""
        ...


@runtime_checkable
class StreamingAdapter(Protocol):
    """An adapter that can read its output fields from a completion still arriving.

    Optional: ``program.stream(...)`` streams each field's text as it is decoded through an
    adapter that has this method; through one that has not, each field comes whole once the
    answer is parsed.
    """

    def partial_fields(self, signature: Signature, text: str, *, final: bool = False) -> dict[str, str]:
        """The text of each output field that can no longer change, in the order they appear.

        Called with ever longer prefixes of one completion, each field's text must only grow
        (the caller sends the difference), so text that may still change is held back; with
        ``final=True`` the completion is whole. For a text field, the text is the value
        :meth:`Adapter.parse` will read.
        """
        ...


_Parse = TypeVar("_Parse", bound=Callable[..., dict[str, Any]])


def bounded_parse(parse: _Parse) -> _Parse:
    """Make an adapter's ``parse(signature, text)`` raise only ParseError for unreadable text.

    JSON nested deeper than :data:`oobleck._types.MAX_VALUE_DEPTH`, invalid Unicode escapes,
    and any RecursionError while reading become a ParseError that keeps the raw text, so no
    answer, however hostile, escapes as one of Python's own exceptions.
    """

    @functools.wraps(parse)
    def wrapper(self: Any, signature: Signature, text: str) -> dict[str, Any]:
        try:
            return parse(self, signature, text)
        except _types.UnreadableJSON as exc:
            reason = exc.reason
        except RecursionError:
            reason = "the answer nests too deeply to read"
        raise ParseError(
            f"cannot read the answer for signature {signature}: {reason}; answer was: {text[:200]!r}",
            raw=text,
            field=None,
            signature=signature,
            reason=reason,
        )

    return wrapper  # type: ignore[return-value]  # same signature as the wrapped method


def demo_turns(
    signature: Signature,
    demos: Sequence[Mapping[str, Any]],
    *,
    inputs_text: Callable[[Mapping[str, Any]], str],
    outputs_text: Callable[[Mapping[str, Any]], str],
) -> list[Message]:
    """Each demo as a user turn (its inputs) and an assistant turn (its outputs)."""
    messages = []
    for demo in demos:
        messages.append(Message(role="user", content=inputs_text(demo)))
        outs = {k: demo[k] for k in signature.output_fields if k in demo}
        messages.append(Message(role="assistant", content=outputs_text(outs)))
    return messages


class DemoTurns:
    """The render shared by the built-in adapters.

    The system message, each demo as a user turn (its inputs) and an assistant turn (its
    outputs, written by ``format_outputs``), then the inputs. Subclasses say how each part is
    written.
    """

    def options(self) -> dict[str, Any]:
        """No settings: ``{}`` (a subclass with constructor options lists them)."""
        return {}

    def render(
        self,
        signature: Signature,
        *,
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[Message]:
        """The exact messages for one call."""
        messages = [self.system_message(signature)]
        messages += demo_turns(
            signature,
            demos,
            inputs_text=lambda values: self.user_text(signature, values, last=False),
            outputs_text=lambda values: self.format_outputs(signature, values),
        )
        messages.append(Message(role="user", content=self.user_text(signature, inputs, last=True)))
        return messages

    def system_message(self, signature: Signature) -> Message:
        """Instructions, fields and the answer format."""
        raise NotImplementedError

    def user_text(self, signature: Signature, values: Mapping[str, Any], *, last: bool) -> str:
        """A user turn showing the input fields of ``values`` (``last``: the call's own inputs)."""
        raise NotImplementedError

    def format_outputs(self, signature: Signature, values: Mapping[str, Any]) -> str:
        """Write output values the way the LM is asked to."""
        raise NotImplementedError


def type_hint(field: Field) -> str:
    """A short, human wording of what a field's value must look like."""
    choices = _types.literal_choices(field.type)
    if choices is not None:
        return "one of: " + ", ".join(str(c) for c in choices)
    if field.type is str:
        return "text"
    if field.type is int:
        return "an integer"
    if field.type is float:
        return "a number"
    if field.type is bool:
        return "true or false"
    return f"JSON matching {_types.type_to_str(field.type)}"


def describe_fields(signature: Signature) -> str:
    """The field listing shared by the built-in adapters' system messages."""
    lines = ["Input fields:"]
    for f in signature.input_fields.values():
        lines.append(f"- {f.name} ({_types.type_to_str(f.type)})" + (f": {f.desc}" if f.desc else ""))
    lines.append("Output fields:")
    for f in signature.output_fields.values():
        lines.append(f"- {f.name} ({type_hint(f)})" + (f": {f.desc}" if f.desc else ""))
    return "\n".join(lines)
