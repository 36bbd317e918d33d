"""The JSON adapter: the answer is one JSON object, constrained by the server where it can be.

Backends that declare ``capabilities.json_schema`` receive the output schema as
``response_format``; llama.cpp turns it into a grammar, so even a 135M model cannot produce an
unreadable answer. Other backends get the schema in the prompt only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic
from typing_extensions import TypedDict

from oobleck import _types
from oobleck.adapters._partial import json_fields
from oobleck.adapters.base import DemoTurns, bounded_parse, describe_fields
from oobleck.adapters.chat import format_fields, input_types
from oobleck.errors import ParseError
from oobleck.lm.base import Capabilities
from oobleck.lm.types import Message
from oobleck.signature import Field, Signature

__all__ = ["JSONAdapter", "output_schema"]


@functools.lru_cache(maxsize=256)
def _schema_for(fields: tuple[Field, ...], name: str) -> dict[str, Any]:
    # A TypedDict, not a BaseModel: its keys may be any field name (``model_config``, ``copy``,
    # ``json``...) without clashing with BaseModel's attributes; the schema is the same.
    answer = TypedDict(  # type: ignore[misc]  # fields built at run time
        name or "Output",
        {f.name: Annotated[f.type, pydantic.Field(description=f.desc or None)] for f in fields},
    )
    schema: dict[str, Any] = pydantic.TypeAdapter(answer).json_schema()
    schema["additionalProperties"] = False
    return schema


def output_schema(signature: Signature) -> dict[str, Any]:
    """The JSON schema of the signature's outputs as one object."""
    return _schema_for(tuple(signature.output_fields.values()), signature.name)


class JSONAdapter(DemoTurns):
    """Answers as a JSON object; uses structured output where the backend supports it.

    Args:
        strict: when True, ask for the schema even on backends that do not declare support
            (they may reject it); when False (default), only where declared.
    """

    name = "json"
    version = "1"

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict

    def options(self) -> dict[str, Any]:
        """``{"strict": True}`` for a strict adapter, else ``{}``.

        A strict adapter sends ``response_format`` everywhere. The default is left out, as
        artifacts have always recorded it.
        """
        return {"strict": True} if self.strict else {}

    @functools.lru_cache(maxsize=256)  # noqa: B019 - adapters are few and long-lived
    def system_message(self, signature: Signature) -> Message:
        """Instructions, fields, and the JSON schema of the answer."""
        return Message(role="system", content=self._system(signature))

    def user_text(self, signature: Signature, values: Mapping[str, Any], *, last: bool) -> str:
        """The input fields as marker sections (the answer is JSON, the inputs stay readable)."""
        shown = {k: values[k] for k in signature.input_fields if k in values}
        return format_fields(shown, input_types(signature))

    def _system(self, signature: Signature) -> str:
        keys = ", ".join(f'"{k}"' for k in signature.output_fields)
        return (
            f"{signature.instructions}\n\n{describe_fields(signature)}\n\n"
            f"Answer with one JSON object with the keys {keys} and nothing else. Its JSON schema:\n"
            f"{json.dumps(output_schema(signature), ensure_ascii=False, sort_keys=True)}"
        )

    def request_options(self, signature: Signature, capabilities: Capabilities) -> dict[str, Any]:
        """``response_format`` with the output schema where the backend supports it."""
        if capabilities.json_schema or self.strict:
            return {"response_format": {"name": signature.name, "schema": output_schema(signature)}}
        return {}

    def format_outputs(self, signature: Signature, values: Mapping[str, Any]) -> str:
        """The output values as a JSON object."""
        return json.dumps({k: _types.to_jsonable(v) for k, v in values.items()}, ensure_ascii=False)

    @bounded_parse
    def parse(self, signature: Signature, text: str) -> dict[str, Any]:
        """Read the first JSON object in the text and validate each output field.

        Raises:
            ParseError: no JSON object, a missing key, or a value that does not fit its type.
        """
        data = _first_object(text)
        if data is None:
            raise ParseError(
                f"expected a JSON object with keys {list(signature.output_fields)}, got {text[:200]!r}",
                raw=text,
                field=None,
                signature=signature,
                reason="no JSON object in the answer",
            )
        values: dict[str, Any] = {}
        for name, field in signature.output_fields.items():
            if name not in data:
                raise ParseError(
                    f"the JSON answer has no key {name!r} (signature {signature}); got keys {sorted(data)}",
                    raw=text,
                    field=name,
                    signature=signature,
                    reason=f"missing key {name}",
                )
            try:
                values[name] = _types.validate(field.type, data[name])
            except pydantic.ValidationError as exc:
                reason = str(exc).splitlines()[-1].strip() if str(exc) else "invalid value"
                raise ParseError(
                    f"key {name!r} should be {_types.type_to_str(field.type)}, got {data[name]!r} ({reason})",
                    raw=text,
                    field=name,
                    signature=signature,
                    reason=reason,
                ) from exc
        return values

    def partial_fields(self, signature: Signature, text: str, *, final: bool = False) -> dict[str, str]:
        """Each output field's text so far in a JSON answer still arriving (for streaming).

        String values stream as they are decoded; other values come whole once complete
        (see :mod:`oobleck.adapters._partial`).
        """
        return json_fields(signature, text, final=final)

    def repair_messages(self, signature: Signature, raw: str, reason: str) -> list[Message]:
        """Show the unreadable answer and ask for the JSON object again."""
        keys = ", ".join(f'"{k}"' for k in signature.output_fields)
        return [
            Message(role="assistant", content=raw),
            Message(
                role="user",
                content=f"That answer could not be read ({reason}). Answer again with one JSON object with the keys {keys}.",
            ),
        ]


def _first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in the text, or None.

    Raises:
        UnreadableJSON: the text nests deeper than the answer limit, or the object holds an
            invalid Unicode escape.
    """
    _types.check_nesting(text)
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            _types.check_value(obj)
            return obj
        start = text.find("{", start + 1)
    return None
