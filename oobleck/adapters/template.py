"""Prompt formats as a searchable parameter: a small set of readable variants of the same call.

On small models the form of a prompt matters as much as its words: with the answer
constrained, the first label token is decided mostly by the prompt's shape, so a one-line
system prompt with ``Sentence: ...`` as the user turn and the JSON adapter's full field list
and schema answer the same rows differently (measured in benchmarks/README.md, sections
default_adapter.py and compile_instructions.py). No single form wins on every task, so the
optimizers can choose among these, by the metric, like instructions and demos:

============  ===================================================================================
name          what is sent
============  ===================================================================================
chat          :class:`~oobleck.adapters.chat.ChatAdapter`: ``[[ ## field ## ]]`` markers, fields
              listed in the system message
json          :class:`~oobleck.adapters.json.JSONAdapter`: field list and JSON schema spelled out
one_line      the instruction alone as the system message, ``Name: value`` lines as the user
              turn, the answer a JSON object (constrained by the backend where it can be)
keys_hint     as ``one_line``, plus one line naming the answer's keys and their allowed values
              (``Answer with a JSON object: {"label": <one of: 'positive', 'negative'>}``):
              the schema in brief, for when the constraint alone leaves the model guessing
prefix        the instruction and the field list in the system message, ``Name: value`` lines
              in and out
user_turn     no system message: the instruction opens the user turn, ``Name: value`` lines,
              JSON answer
inline_demos  as ``one_line``, with the demos written into the system message as a block
              instead of as conversation turns
============  ===================================================================================

:class:`TemplateAdapter` is the one class behind the last five; its ``options()`` are saved
in artifacts, and ``render`` shows exactly what is sent. This table is :data:`FORMATS`: a new
format is one row there, and the adapter names that artifacts record (:data:`ADAPTERS`) are
read from it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from oobleck import _types
from oobleck.adapters._partial import json_fields
from oobleck.adapters._values import format_value
from oobleck.adapters.base import Adapter, bounded_parse, demo_turns, describe_fields, type_hint
from oobleck.adapters.chat import ChatAdapter, _parse_field
from oobleck.adapters.json import JSONAdapter, _first_object, output_schema
from oobleck.errors import ConfigError, ParseError
from oobleck.lm.base import Capabilities
from oobleck.lm.types import Message
from oobleck.signature import Signature

__all__ = ["ADAPTERS", "FORMATS", "TemplateAdapter", "format_adapter", "format_name"]

Output = Literal["json", "prefix"]
Schema = bool | Literal["keys"]


def label(name: str) -> str:
    """``"movie_review"`` → ``"Movie review"``: how a field is introduced in ``Name: value`` form."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


class TemplateAdapter:
    """``Name: value`` prompts with configurable placement of the instruction, schema and demos.

    Args:
        output: ``"json"`` (a JSON object, constrained via ``response_format`` where the backend
            supports it) or ``"prefix"`` (``Name: value`` lines).
        schema: ``True`` spells the field list out in the system message; ``"keys"`` adds one
            line naming only the answer's keys and their types or allowed values; ``False``
            nothing (the output constraint, where the backend has one, carries the schema).
        instructions: ``"system"`` (the system message) or ``"user"`` (opening the user turn;
            no system message).
        demos: ``"turns"`` (user/assistant pairs) or ``"inline"`` (a block in the system message).

    Example:
        >>> msgs = TemplateAdapter().render(Signature("sentence -> label"), demos=[], inputs={"sentence": "Fine."})
        >>> [(m.role, m.content) for m in msgs]
        [('system', 'Given the fields `sentence`, produce the fields `label`.'), ('user', 'Sentence: Fine.')]
    """

    name = "template"
    version = "1"

    def __init__(
        self,
        *,
        output: Output = "json",
        schema: Schema = False,
        instructions: Literal["system", "user"] = "system",
        demos: Literal["turns", "inline"] = "turns",
    ) -> None:
        if output not in ("json", "prefix"):
            raise ConfigError(f"output must be 'json' or 'prefix', got {output!r}")
        if schema not in (True, False, "keys"):
            raise ConfigError(f"schema must be True, False or 'keys', got {schema!r}")
        if instructions not in ("system", "user"):
            raise ConfigError(f"instructions must be 'system' or 'user', got {instructions!r}")
        if demos not in ("turns", "inline"):
            raise ConfigError(f"demos must be 'turns' or 'inline', got {demos!r}")
        if demos == "inline" and instructions == "user":
            raise ConfigError("inline demos go in the system message; use instructions='system' with them")
        self.output: Output = output
        self.schema: Schema = schema
        self.instructions = instructions
        self.demos = demos

    def options(self) -> dict[str, Any]:
        """The constructor options (saved in artifacts)."""
        return {"output": self.output, "schema": self.schema, "instructions": self.instructions, "demos": self.demos}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemplateAdapter) and self.options() == other.options()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.options().items())))

    def __repr__(self) -> str:
        return "TemplateAdapter(" + ", ".join(f"{k}={v!r}" for k, v in self.options().items()) + ")"

    # ---- rendering ----

    def render(
        self,
        signature: Signature,
        *,
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[Message]:
        """The system message (if any), demos, then the inputs as ``Name: value`` lines."""
        messages: list[Message] = []
        system = self._system(signature, demos if self.demos == "inline" else ())
        if self.instructions == "system":
            messages.append(Message(role="system", content=system))
        if self.demos == "turns":
            messages += demo_turns(
                signature,
                demos,
                inputs_text=lambda values: self._inputs(signature, values),
                outputs_text=lambda values: self.format_outputs(signature, values),
            )
        user = self._inputs(signature, inputs)
        if self.instructions == "user":
            user = f"{system}\n\n{user}"
        messages.append(Message(role="user", content=user))
        return messages

    def _system(self, signature: Signature, demos: Sequence[Mapping[str, Any]]) -> str:
        parts = [signature.instructions]
        if self.schema == "keys":
            if self.output == "json":
                keys = ", ".join(f'"{f.name}": <{type_hint(f)}>' for f in signature.output_fields.values())
                parts.append(f"Answer with a JSON object: {{{keys}}}")
            else:
                parts.append(
                    "Answer as: "
                    + ", ".join(f"{label(f.name)}: <{type_hint(f)}>" for f in signature.output_fields.values())
                )
        elif self.schema:
            parts.append(describe_fields(signature))
            if self.output == "json":
                keys = ", ".join(f'"{k}"' for k in signature.output_fields)
                parts.append(f"Answer with one JSON object with the keys {keys}.")
            else:
                parts.append("Answer with " + ", ".join(f"{label(k)}: ..." for k in signature.output_fields) + ".")
        if demos:
            shown = [
                self._inputs(signature, d)
                + "\n"
                + self.format_outputs(signature, {k: d[k] for k in signature.output_fields if k in d})
                for d in demos
            ]
            parts.append("Examples:\n\n" + "\n\n".join(shown))
        return "\n\n".join(parts)

    def _inputs(self, signature: Signature, values: Mapping[str, Any]) -> str:
        return _lines({k: values[k] for k in signature.input_fields if k in values}, _input_types(signature))

    def request_options(self, signature: Signature, capabilities: Capabilities) -> dict[str, Any]:
        """``response_format`` for JSON answers on backends that support it."""
        if self.output == "json" and capabilities.json_schema:
            return {"response_format": {"name": signature.name, "schema": output_schema(signature)}}
        return {}

    def format_outputs(self, signature: Signature, values: Mapping[str, Any]) -> str:
        """Output values as the answer is asked for (JSON object or ``Name: value`` lines)."""
        if self.output == "json":
            return json.dumps({k: _types.to_jsonable(v) for k, v in values.items()}, ensure_ascii=False)
        types = {f.name: f.type for f in signature.output_fields.values()}
        return _lines(values, types)

    # ---- parsing ----

    @bounded_parse
    def parse(self, signature: Signature, text: str) -> dict[str, Any]:
        """Read a JSON object, else ``Name: value`` lines, else (one output field) the whole text.

        Raises:
            ParseError: an output field is missing or does not fit its type.
        """
        outputs = signature.output_fields
        data = _first_object(text) if "{" in text else None
        sections: dict[str, Any] = {}
        if data is not None:
            sections = {k: data[k] for k in outputs if k in data}
        if len(sections) < len(outputs):
            sections.update({k: v for k, v in _read_lines(signature, text).items() if k not in sections})
        if not sections and len(outputs) == 1:
            sections[next(iter(outputs))] = text.strip()
        values: dict[str, Any] = {}
        for name, field in outputs.items():
            if name not in sections:
                raise ParseError(
                    f"the answer has no value for output field {name!r} (signature {signature}); answer was: {text[:200]!r}",
                    raw=text,
                    field=name,
                    signature=signature,
                    reason=f"missing field {name}",
                )
            value = sections[name]
            if data is not None and name in data and _is_label(field.type, value):
                # a label from the JSON object, as typed: "1" and 1 are both labels of Literal["1", 1]
                values[name] = _types.validate(field.type, value)
            elif isinstance(value, str):
                values[name] = _parse_field(signature, name, field.type, value, text)
            else:
                values[name] = _parse_field(signature, name, field.type, json.dumps(value, ensure_ascii=False), text)
        return values

    def partial_fields(self, signature: Signature, text: str, *, final: bool = False) -> dict[str, str]:
        """Each output field's text so far in an answer still arriving (for streaming).

        A JSON answer streams as :meth:`JSONAdapter.partial_fields` does. ``Name: value``
        lines do not: a line may yet turn out to continue the previous value, so the fields
        come whole once the answer is parsed.
        """
        return json_fields(signature, text, final=final) if self.output == "json" else {}

    def repair_messages(self, signature: Signature, raw: str, reason: str) -> list[Message]:
        """Show the unreadable answer and ask again in the expected form."""
        if self.output == "json":
            keys = ", ".join(f'"{k}"' for k in signature.output_fields)
            ask = f"Answer again with one JSON object with the keys {keys}."
        else:
            ask = "Answer again as: " + ", ".join(f"{label(k)}: ..." for k in signature.output_fields)
        return [
            Message(role="assistant", content=raw),
            Message(role="user", content=f"That answer could not be read ({reason}). {ask}"),
        ]


def _is_label(tp: Any, value: Any) -> bool:
    """Whether ``value`` is exactly one of the labels of ``tp`` (type included: ``1`` is not ``True``)."""
    return any(type(c) is type(value) and c == value for c in _types.literal_choices(tp) or ())


@functools.lru_cache(maxsize=256)
def _input_types(signature: Signature) -> dict[str, Any]:
    return {f.name: f.type for f in signature.input_fields.values()}


def _lines(values: Mapping[str, Any], types: Mapping[str, Any]) -> str:
    out = []
    for name, value in values.items():
        tp = types.get(name, str if isinstance(value, str) else object)
        out.append(f"{label(name)}: {format_value(tp, value)}")
    return "\n".join(out)


def _read_lines(signature: Signature, text: str) -> dict[str, str]:
    """``Name: value`` sections of the answer, by output field (case-insensitive names)."""
    names = {label(n).lower(): n for n in signature.output_fields} | {n.lower(): n for n in signature.output_fields}
    pattern = re.compile(
        r"^[\s\ufeff]*(" + "|".join(re.escape(k) for k in sorted(names, key=len, reverse=True)) + r")\s*:", re.I | re.M
    )
    found: dict[str, str] = {}
    matches = list(pattern.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = names[m.group(1).lower()]
        found.setdefault(name, text[m.end() : end].strip())
    return found


#: The named formats the optimizers choose among (see the module docstring), one row each. The
#: first rows are adapters under their own names; the adapter names themselves (:data:`ADAPTERS`)
#: are read from this table, so a new format, or a new adapter class, is one row here.
FORMATS: dict[str, Adapter] = {
    "chat": ChatAdapter(),
    "json": JSONAdapter(),
    "one_line": TemplateAdapter(output="json"),
    "keys_hint": TemplateAdapter(output="json", schema="keys"),
    "prefix": TemplateAdapter(output="prefix", schema=True),
    "user_turn": TemplateAdapter(output="json", instructions="user"),
    "inline_demos": TemplateAdapter(output="json", demos="inline"),
}

#: The built-in adapter classes by their ``name`` ("chat", "json", "template"): the classes of
#: :data:`FORMATS`, which an artifact's adapter name and ``options()`` rebuild.
ADAPTERS: dict[str, type[Adapter]] = {type(a).name: type(a) for a in FORMATS.values()}


def format_adapter(name: str) -> Adapter:
    """The adapter of the named format.

    Raises:
        ConfigError: an unknown name.
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown format {name!r}; known: {sorted(FORMATS)}") from None


def format_name(adapter: Adapter) -> str:
    """The format name of ``adapter``: a name from FORMATS, else its adapter name and options."""
    options = adapter.options()
    for name, known in FORMATS.items():
        if type(known) is type(adapter) and known.options() == options:
            return name
    return adapter.name + (json.dumps(options, sort_keys=True) if options else "")
