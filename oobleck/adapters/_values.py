"""How a field's value reads in a prompt: raw text, numbered blocks, or JSON.

Every built-in adapter writes input and demo values through :func:`format_value`. Strings (and
string labels) go in as they are; a list of :class:`PromptBlock` values, such as retrieved
passages, reads as numbered blocks with their titles; anything else is one line of JSON.
:class:`Placeholder` and :func:`placeholder` stand in for values a dry run does not compute.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, Union, runtime_checkable

import pydantic

from oobleck import _types
from oobleck.errors import InputError

__all__ = ["Placeholder", "PromptBlock", "format_blocks", "format_value", "placeholder"]


@runtime_checkable
class PromptBlock(Protocol):
    """A value that a prompt shows as a titled block (a retrieved passage is one).

    A list of them reads as numbered blocks (``[1] title`` over the text), never as one JSON
    line; so does a single one, as block 1.
    """

    def prompt_block(self) -> tuple[str, str]:
        """``(title, text)``: the block's title ("" for none) and its text."""
        ...


class _SavedBlock(pydantic.BaseModel):
    """A block as JSON data (how a passage comes back from a saved artifact's demos).

    The fields are those of :class:`oobleck.retrieve.Passage`, checked the same way, so a
    mapping reads as a block exactly when it would rebuild a passage.
    """

    id: str = ""
    title: str = ""
    text: str
    score: float = 0.0

    def prompt_block(self) -> tuple[str, str]:
        return self.title, self.text


_SAVED_KEYS = frozenset(_SavedBlock.model_fields)


def _blocks(value: Any) -> list[PromptBlock] | None:
    """``value`` as blocks when it is a non-empty list of PromptBlocks or block-shaped mappings.

    Mappings count when their keys are among id/title/text/score and include a ``text`` string.
    """
    if not isinstance(value, (list, tuple)) or not value:
        return None
    out: list[PromptBlock] = []
    for item in value:
        if isinstance(item, PromptBlock):
            out.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str) and set(item) <= _SAVED_KEYS:
            try:
                out.append(_SavedBlock(**item))
            except pydantic.ValidationError:
                return None
        else:
            return None
    return out


def format_blocks(blocks: Sequence[PromptBlock]) -> str:
    """Numbered blocks with their titles, one paragraph each (how prompts show passages).

    Example:
        >>> print(format_blocks([_SavedBlock(title="Paris", text="Capital of France."), _SavedBlock(text="Untitled.")]))
        [1] Paris
        Capital of France.
        <BLANKLINE>
        [2]
        Untitled.
    """
    parts = []
    for i, block in enumerate(blocks, start=1):
        title, text = block.prompt_block()
        head = f"[{i}] {title}" if title else f"[{i}]"
        parts.append(f"{head}\n{text}")
    return "\n\n".join(parts)


def format_value(tp: Any, value: Any) -> str:
    """Render a field value as text for a prompt.

    Args:
        tp: the field's type.
        value: its value.

    Returns:
        The text as it is for strings (and string labels of a Literal or Enum), numbered blocks
        for a :class:`PromptBlock` or a list of them, JSON otherwise.

    Raises:
        InputError: a value that is none of these and not JSON data.
    """
    if isinstance(value, Placeholder):
        return str(value)
    if isinstance(value, str) and (_types.is_str(tp) or _literal_of_strings(tp) or _is_str_enum(tp)):
        return value
    if isinstance(value, enum.Enum) and isinstance(value.value, str) and _is_str_enum(type(value)):
        return value.value  # among other values, as JSON: "1" and 1 must not read alike
    if isinstance(value, (list, tuple, pydantic.BaseModel)):
        blocks = _blocks([value] if isinstance(value, PromptBlock) else value)
        if blocks is not None:
            return format_blocks(blocks)
    try:
        return json.dumps(_types.to_jsonable(value), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InputError(
            f"a value of type {type(value).__name__} cannot be written into a prompt ({exc}); "
            "pass text, numbers, booleans, lists, dicts or pydantic models"
        ) from None


def _literal_of_strings(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal and all(isinstance(a, str) for a in typing.get_args(tp))


def _is_str_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum) and all(isinstance(m.value, str) for m in tp)


class Placeholder(str):
    """A string rendered verbatim whatever the field type (``{question}`` in templates)."""


def placeholder(tp: Any, name: str) -> Any:
    """A value of type ``tp`` standing for an output not computed (dry-run rendering)."""
    if tp is str or tp is Any:
        return Placeholder("{" + name + "}")
    choices = _types.literal_choices(tp)
    if choices:
        return _types.validate(tp, choices[0])
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        return None if type(None) in args else placeholder(args[0], name)
    simple = {int: 0, float: 0.0, bool: False, list: [], dict: {}, tuple: ()}
    base = origin or tp
    if base in simple:
        return _copy_empty(simple[base])
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return tp.model_construct()
    return None


def _copy_empty(value: Any) -> Any:
    return type(value)() if isinstance(value, (list, dict, tuple)) else value
