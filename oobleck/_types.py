"""Field types: how they are written in strings, validated, and rebuilt from JSON schema.

A field's type is any type pydantic validates. Signatures written as strings may only name a
safe vocabulary (builtins, ``Literal``, ``Optional``, ``Union``, ``list``, ``dict``, ``tuple``,
``Any``) plus whatever the caller passes as ``types={...}``; nothing is evaluated.
"""

from __future__ import annotations

import ast
import enum
import functools
import json
import math
import re
import types
import typing
from typing import Any, Literal, Optional, Union

import pydantic
import pydantic_core

from oobleck.errors import ArtifactError, SignatureError

_SIMPLE: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "Any": Any,
    "None": type(None),
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
}
_GENERIC = {"list", "dict", "tuple", "List", "Dict", "Tuple"}
_ARITY: dict[Any, int] = {list: 1, dict: 2}


MAX_TYPE_DEPTH = 32
"""How deeply a written type may nest (``list[list[...]]``); deeper is a SignatureError."""


def annotation_from_ast(node: ast.expr, extra: typing.Mapping[str, Any], _depth: int = 0) -> Any:
    """Build a type from an annotation's AST without evaluating any code.

    Raises:
        SignatureError: an unknown name, an unsupported construct, an empty or malformed
            generic (``tuple[()]``, ``Union[()]``) or nesting deeper than ``MAX_TYPE_DEPTH``.
    """
    if _depth > MAX_TYPE_DEPTH:
        raise SignatureError(f"the type {ast.unparse(node)[:80]!r}... nests deeper than {MAX_TYPE_DEPTH} levels")
    try:
        return _annotation(node, extra, _depth)
    except (TypeError, IndexError, ValueError) as exc:
        if isinstance(exc, SignatureError):
            raise
        raise SignatureError(f"the type {ast.unparse(node)[:120]!r} is not a usable field type ({exc})") from None


def _annotation(node: ast.expr, extra: typing.Mapping[str, Any], depth: int) -> Any:
    if isinstance(node, ast.Name):
        return _named(node.id, extra)
    if isinstance(node, ast.Attribute):
        # typing.Literal, typing.Optional ...
        return _named(node.attr, extra)
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        # ``a | b | c`` nests to the left: walk it with a loop, so a long union cannot recurse.
        members: list[Any] = []
        while isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            members.append(annotation_from_ast(node.right, extra, depth + 1))
            node = node.left
        members.append(annotation_from_ast(node, extra, depth + 1))
        return Union[tuple(reversed(members))]
    if isinstance(node, ast.Subscript):
        return _subscript(node, extra, depth)
    raise SignatureError(f"cannot read the type annotation {ast.unparse(node)!r}")


def _named(name: str, extra: typing.Mapping[str, Any]) -> Any:
    if name in extra:
        return extra[name]
    if name in _SIMPLE:
        return _SIMPLE[name]
    raise SignatureError(
        f"unknown type {name!r}; known: {', '.join(sorted(_SIMPLE))}. Pass your own classes with types={{'Name': Name}}."
    )


def _literal(node: ast.Subscript, args: list[ast.expr]) -> Any:
    values: list[Any] = []
    for arg in args:
        if (
            isinstance(arg, ast.UnaryOp)
            and isinstance(arg.op, ast.USub)
            and isinstance(arg.operand, ast.Constant)
            and type(arg.operand.value) is int
        ):
            values.append(-arg.operand.value)  # Literal[-1]: how type_to_str writes a negative label
            continue
        if not isinstance(arg, ast.Constant) or not (arg.value is None or isinstance(arg.value, (str, int, bool))):
            raise SignatureError(
                f"Literal[...] takes only string, int, bool or None constants, got {ast.unparse(arg)!r}"
            )
        values.append(arg.value)
    if not values:
        raise SignatureError(f"{ast.unparse(node)!r} lists no allowed value; write Literal['a', 'b']")
    return Literal[tuple(values)]


def _json_key(tp: Any) -> bool:
    """Whether a JSON object key (always a string) can validate into ``tp``."""
    if tp in (str, int, float, bool, Any):
        return True
    if typing.get_origin(tp) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return bool(members) and all(_json_key(a) for a in members)
    return isinstance(tp, type) and issubclass(tp, enum.Enum) and all(isinstance(m.value, str) for m in tp)


def _subscript(node: ast.Subscript, extra: typing.Mapping[str, Any], depth: int) -> Any:
    head = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", None)
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if head == "Literal":
        return _literal(node, args)
    params = tuple(annotation_from_ast(a, extra, depth + 1) for a in args)
    if not params or any(isinstance(a, ast.Tuple) and not a.elts for a in args):
        raise SignatureError(f"{ast.unparse(node)!r} names no type inside its brackets")
    if head == "Optional" and len(params) == 1:
        return Optional[params[0]]
    if head == "Union":
        return Union[params]
    if head in _GENERIC:
        base = _SIMPLE[head]
        wanted = _ARITY.get(base)
        if wanted is not None and len(params) != wanted:
            example = "dict[str, int]" if base is dict else "list[int]"
            raise SignatureError(
                f"{ast.unparse(node)!r} gives {head} {len(params)} type argument(s); it takes {wanted}, e.g. {example}"
            )
        if base is dict and not _json_key(params[0]):
            raise SignatureError(
                f"{ast.unparse(node)!r}: keys of a JSON object are strings, so a dict key type must be "
                f"str, int, float, bool, Any or a Literal of strings (or a union of them); got {type_to_str(params[0])}"
            )
        return base[params] if len(params) > 1 else base[params[0]]
    if isinstance(head, str) and head in extra and hasattr(extra[head], "__class_getitem__"):
        return extra[head][params if len(params) > 1 else params[0]]
    raise SignatureError(f"unsupported generic type {ast.unparse(node)!r}")


def type_to_str(tp: Any) -> str:
    """Write a type the way a signature string spells it (the inverse of annotation_from_ast)."""
    if tp is Any:
        return "Any"
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin in (Union, types.UnionType):
        return " | ".join(type_to_str(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if not args:
            return name
        return f"{name}[{', '.join(type_to_str(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def check_usable(tp: Any) -> None:
    """Check that pydantic can validate values of ``tp`` and describe it as JSON schema.

    Raises:
        SignatureError: it cannot (``dict[str]``, an arbitrary class, a malformed generic),
            saying why.
    """
    key = _hashable(tp)
    if key is None:
        _check_usable(tp)
    else:
        _check_usable_cached(key)


@functools.lru_cache(maxsize=512)
def _check_usable_cached(tp: Any) -> None:
    _check_usable(tp)


def _check_usable(tp: Any) -> None:
    try:
        pydantic.TypeAdapter(tp).json_schema()
    except Exception as exc:  # pydantic raises many kinds for unusable types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SignatureError(
            f"the type {type_to_str(tp)!r} is not usable as a field type: pydantic cannot validate it or "
            f"write its JSON schema ({first}); use built-in types, Literal[...], or a pydantic model"
        ) from None


def is_finite(value: float) -> bool:
    """``math.isfinite``, False for an int too large for a float (it raises OverflowError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_str(tp: Any) -> bool:
    """True for plain ``str`` fields (rendered and parsed as raw text)."""
    return tp is str


@functools.lru_cache(maxsize=512)
def adapter_for(tp: Any) -> pydantic.TypeAdapter[Any]:
    """A cached pydantic TypeAdapter for a field type."""
    return pydantic.TypeAdapter(tp)


def _hashable(tp: Any) -> Any:
    try:
        hash(tp)
    except TypeError:
        return None
    return tp


def validate(tp: Any, value: Any) -> Any:
    """Validate a Python value against a field type (lax mode, as pydantic does)."""
    key = _hashable(tp)
    ta = adapter_for(key) if key is not None else pydantic.TypeAdapter(tp)
    return ta.validate_python(value)


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of a field type."""
    key = _hashable(tp)
    # Keyed by spelling too: equal types can differ in order (``Literal["b", "a"]``), which
    # the schema's ``enum`` keeps.
    ta = _spelled_adapter(key, repr(tp)) if key is not None else pydantic.TypeAdapter(tp)
    return ta.json_schema()


@functools.lru_cache(maxsize=512)
def _spelled_adapter(tp: Any, spelled: str) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(tp)


def to_jsonable(value: Any) -> Any:
    """Turn a validated value (BaseModel, Enum, tuple ...) into plain JSON data."""
    if isinstance(value, pydantic.BaseModel):
        # a set field dumps as a list in the set's order, which changes per process
        return _sorted_sets(value, value.model_dump(mode="json"))
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def _sorted_sets(python: Any, data: Any) -> Any:
    """``data`` (the JSON dump of ``python``) with the lists that were sets in ``python`` sorted."""
    if isinstance(python, pydantic.RootModel):
        return _sorted_sets(python.root, data)
    if isinstance(python, pydantic.BaseModel) and isinstance(data, dict):
        attrs = {**python.__dict__, **(python.model_extra or {})}
        return {k: _sorted_sets(attrs[k], v) if k in attrs else v for k, v in data.items()}
    if isinstance(python, (set, frozenset)) and isinstance(data, list):
        if any(isinstance(v, (set, frozenset, list, tuple, dict, pydantic.BaseModel)) for v in python):
            return pydantic_core.to_jsonable_python(stable_order(python), fallback=repr)
        try:
            return sorted(data)
        except TypeError:
            return sorted(data, key=lambda v: json.dumps(v, sort_keys=True, default=repr))
    if isinstance(python, dict) and isinstance(data, dict) and len(python) == len(data):
        return {k: _sorted_sets(p, v) for (k, v), p in zip(data.items(), python.values())}
    if isinstance(python, (list, tuple)) and isinstance(data, list) and len(python) == len(data):
        return [_sorted_sets(p, v) for p, v in zip(python, data)]
    return data


def stable_order(value: Any) -> Any:
    """``value`` with every set (nested ones too) as a sorted list, so it prints the same in every process.

    A set's order follows string hashing, which changes per process (``PYTHONHASHSEED``).
    Items that cannot be compared are ordered by their JSON text.

    Example:
        >>> stable_order({"b": {"y", "x"}, "a": [frozenset({2, 1})]})
        {'b': ['x', 'y'], 'a': [[1, 2]]}
    """
    if isinstance(value, (set, frozenset)):
        items = [stable_order(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda v: json.dumps(pydantic_core.to_jsonable_python(v, fallback=repr)))
    if isinstance(value, (list, tuple)):
        items = [stable_order(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: stable_order(v) for k, v in value.items()}
    return value


def literal_choices(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a Literal or Enum type, else None."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(m.value for m in tp)
    return None


def parse_text(tp: Any, text: str) -> Any:
    """Parse a field's text (as an LM wrote it) into a value of the field's type.

    Strings are taken as they are. Other types are read as JSON first, then as the bare text
    (so ``42`` and ``positive`` both work); Literal and Enum labels match case-insensitively and
    ignore surrounding quotes and punctuation, which small models often add.

    Raises:
        pydantic.ValidationError / ValueError: the text does not fit the type.
    """
    if is_str(tp):
        return text
    choices = literal_choices(tp)
    if choices is not None:
        exact = _exact_label(choices, text)
        if exact is not _NO_LABEL:
            return validate(tp, exact)
        cleaned = text.strip().strip("`'\".,;:!*").strip()
        for choice in choices:
            if isinstance(choice, str) and cleaned.lower() == choice.lower():
                return validate(tp, choice)
    try:
        data = loads_answer(text)
    except ValueError:
        return validate(tp, text.strip())
    try:
        return validate(tp, data)
    except pydantic.ValidationError:
        # "123" read as the int 123 for a str-like type, etc.: fall back to the raw text.
        return validate(tp, text.strip())


_NO_LABEL = object()


def _exact_label(choices: tuple[Any, ...], text: str) -> Any:
    """The label ``text`` spells exactly as the adapters write it, else ``_NO_LABEL``.

    Labels that are all text are written as they are; otherwise each is written as JSON
    (``1``, ``"1"``, ``true``). Tried before the lenient match, which would read ``a`` as the
    label ``A`` or ``yes!`` as ``yes``.
    """
    stripped = text.strip()
    if all(isinstance(c, str) for c in choices):
        for spelled in (text, stripped):
            if spelled in choices:
                return spelled
        return _NO_LABEL
    for choice in choices:
        try:
            if json.dumps(choice, ensure_ascii=False) == stripped:
                return choice
        except (TypeError, ValueError):
            continue
    return _NO_LABEL


# --- reading JSON written by an LM ---

MAX_VALUE_DEPTH = 100
"""How deeply JSON in an LM answer may nest; deeper answers are unreadable (ParseError)."""

# A JSON string (escapes included) or one bracket: what the nesting pre-check looks at.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class UnreadableJSON(ValueError):
    """JSON in an answer that must not be read: too deeply nested, or not valid Unicode.

    Attributes:
        reason: what is wrong, for the ParseError the adapter raises.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_nesting(text: str, limit: int = MAX_VALUE_DEPTH) -> None:
    """Refuse text whose brackets (outside JSON strings) nest deeper than ``limit``.

    Runs before any JSON decoding, so an answer nested a thousand deep never reaches the
    recursive decoder. Linear in the text.

    Raises:
        UnreadableJSON: the nesting is deeper than ``limit``.
    """
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                raise UnreadableJSON(f"the answer's JSON nests deeper than {limit} levels")
        elif token in "]}":
            depth = max(depth - 1, 0)


def check_value(value: Any) -> None:
    r"""Refuse decoded JSON holding strings that are not valid Unicode (lone surrogates).

    ``"\ud800"`` decodes to a string no file, terminal or HTTP body can encode. Walks the
    value without recursion.

    Raises:
        UnreadableJSON: a string (or key) with a lone surrogate.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise UnreadableJSON(f"the answer's JSON holds an invalid Unicode escape in {item[:40]!r}") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads_answer(text: str) -> Any:
    """``json.loads`` for text an LM wrote: bounded nesting, valid Unicode only.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError``), or :class:`UnreadableJSON`.
    """
    check_nesting(text)
    data = json.loads(text)
    check_value(data)
    return data


# --- rebuilding types from JSON schema (for artifacts loaded without the user's classes) ---

_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


MAX_SCHEMA_NODES = 2_000
"""The most schema nodes one field's type may expand to (``$ref``/``anyOf`` fan-out is bounded)."""


def type_from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None, name: str = "Model") -> Any:
    """Rebuild a Python type from a JSON schema produced by pydantic.

    Objects with properties become pydantic models created on the fly; enums become Literals.
    Only data is read, nothing is executed. Time and memory are bounded whatever the schema:
    each ``$ref`` is resolved once, references may not form a cycle, nesting is at most
    ``MAX_TYPE_DEPTH`` deep and the expansion at most ``MAX_SCHEMA_NODES`` nodes.

    Raises:
        ArtifactError: the schema is malformed, cyclic, or too large to rebuild.
    """
    if not isinstance(schema, dict):
        raise ArtifactError(f"a field schema must be a JSON object, got {type(schema).__name__}")
    found = defs if defs is not None else schema.get("$defs", {})
    return _SchemaReader(found if isinstance(found, dict) else {}).read(schema, name, 0)


class _SchemaReader:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.resolved: dict[str, Any] = {}
        self.resolving: set[str] = set()
        self.nodes = 0

    def read(self, schema: Any, name: str, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_SCHEMA_NODES:
            raise ArtifactError(f"a field schema expands to more than {MAX_SCHEMA_NODES} nodes; refusing to rebuild it")
        if depth > MAX_TYPE_DEPTH:
            raise ArtifactError(f"a field schema nests deeper than {MAX_TYPE_DEPTH} levels")
        if not isinstance(schema, dict):
            raise ArtifactError(f"expected a JSON schema object, got {type(schema).__name__}: {str(schema)[:80]!r}")
        try:
            return self._read(schema, name, depth)
        except (TypeError, ValueError, NameError, AttributeError, pydantic.PydanticUserError) as exc:
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError(f"cannot rebuild a type from the schema {_short(schema)} ({exc})") from None

    def _ref(self, ref: Any, depth: int) -> Any:
        target = ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None
        if target is None or not isinstance(self.defs.get(target), dict):
            raise ArtifactError(f"schema reference {ref!r} not found in $defs")
        if target in self.resolved:
            return self.resolved[target]
        if target in self.resolving:
            raise ArtifactError(f"schema reference {ref!r} refers to itself; recursive field types are not supported")
        self.resolving.add(target)
        self.resolved[target] = self.read(self.defs[target], target, depth + 1)
        self.resolving.discard(target)
        return self.resolved[target]

    def _read(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        if "$ref" in schema:
            return self._ref(schema["$ref"], depth)
        if "enum" in schema:
            return Literal[_labels(schema["enum"])]
        if "const" in schema:
            return Literal[_labels([schema["const"]])]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = schema[key]
                if not isinstance(options, list) or not options:
                    raise ArtifactError(f"{key} must be a non-empty list, got {_short(options)}")
                members = tuple(self.read(s, name, depth + 1) for s in options)
                return Union[members] if len(members) > 1 else members[0]
        kind = schema.get("type")
        if isinstance(kind, list):
            return Union[tuple(_SCALARS.get(k, Any) if isinstance(k, str) else Any for k in kind) or (Any,)]
        if kind == "array":
            if "prefixItems" in schema:
                items = schema["prefixItems"]
                if not isinstance(items, list) or not items:
                    raise ArtifactError(f"prefixItems must be a non-empty list, got {_short(items)}")
                # A type built at run time from the schema; mypy checks only static type arguments.
                return tuple[tuple(self.read(s, name, depth + 1) for s in items)]  # type: ignore[misc]
            items = schema.get("items")
            return list[self.read(items, name, depth + 1)] if items else list  # type: ignore[misc]  # as above
        if kind == "object":
            return self._object(schema, name, depth)
        if isinstance(kind, str) and kind in _SCALARS:
            return _SCALARS[kind]
        return Any

    def _object(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        props = schema.get("properties")
        if not props:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return dict[str, self.read(extra, name, depth + 1)]  # type: ignore[misc]  # built at run time
            return dict
        if not isinstance(props, dict):
            raise ArtifactError(f"properties must be a JSON object, got {_short(props)}")
        required = schema.get("required", ())
        required = set(required) if isinstance(required, list) else set()
        fields: dict[str, Any] = {}
        for prop, sub in props.items():
            if not prop.isidentifier() or prop.startswith("_") or prop.startswith("model_"):
                raise ArtifactError(f"property name {prop!r} cannot be a field of a rebuilt model")
            sub_type = self.read(sub, prop.title(), depth + 1)
            default = sub.get("default") if isinstance(sub, dict) else None
            fields[prop] = (sub_type, ...) if prop in required else (sub_type, default)
        title = schema.get("title", name)
        model_name = next((n for n in (title, name) if isinstance(n, str) and n.isidentifier()), "Model")
        return pydantic.create_model(model_name, **fields)


def _labels(values: Any) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values:
        raise ArtifactError(f"enum must be a non-empty list, got {_short(values)}")
    for v in values:
        if not (v is None or isinstance(v, (str, int, float, bool))):
            raise ArtifactError(f"enum values must be strings, numbers, booleans or null, got {_short(v)}")
    return tuple(values)


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (RecursionError, ValueError):
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."
