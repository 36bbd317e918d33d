"""Signatures: what one LM step takes and what it must produce.

A signature is an ordered list of input and output fields (name, type, description) plus an
instruction. Write one as a string::

    Signature("context, question -> answer")
    Signature("question -> answer: int = 'the final number'")
    Signature("text -> label: Literal['pos', 'neg']")

or as a class whose docstring is the instruction::

    class QA(Signature):
        '''Answer the question in a few words.'''
        question: str = InputField(desc="a trivia question")
        answer: str = OutputField()

Signatures are immutable; ``with_instructions()`` and friends return copies, and
``Signature(str(sig)) == sig`` for every signature written with the built-in types.
The string form is parsed with :mod:`ast` as a keyword-only parameter list: nothing is
evaluated.

Whatever builds a signature (string, class or fields), what it accepts calls, saves, loads and
calls again; anything else is a SignatureError at once. A field name is a Python identifier in
NFKC form that is not a keyword, not ``self`` (every call method's own parameter) and does not
start with ``_``; names such as ``model_config``, ``copy`` or ``json`` are fine. A field type is
one pydantic validates and describes as JSON schema, with the arity its generic takes
(``dict[str, int]``, not ``dict[str]``) and dict keys a JSON key can fill.
"""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
import typing
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as _dataclass_field
from types import MappingProxyType
from typing import Any, Literal

from oobleck import _types
from oobleck.errors import SignatureError

__all__ = ["Field", "InputField", "OutputField", "Signature", "ensure_signature"]

FieldKind = Literal["input", "output"]
MAX_SPEC_CHARS = 20_000
"""The longest signature string accepted (parsing time grows with it)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a signature.

    Attributes:
        name: a Python identifier, unique within the signature.
        kind: ``"input"`` or ``"output"``.
        type: any type pydantic validates; ``str`` by default.
        desc: a short description shown to the LM.
    """

    name: str
    kind: FieldKind
    type: Any = str
    desc: str = ""
    # Compared with the type: ``Literal["a", "b"] == Literal["b", "a"]`` in Python, but the
    # label order is shown to the LM, stored in calibrations and cached per signature.
    _spelled: str = _dataclass_field(init=False, repr=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_spelled", repr(self.type))

    def to_dict(self) -> dict[str, Any]:
        """JSON data describing the field: its name, kind, type spelling and JSON schema."""
        return {
            "name": self.name,
            "kind": self.kind,
            "type": _types.type_to_str(self.type),
            "schema": _types.json_schema(self.type),
            "desc": self.desc,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, types: Mapping[str, Any] | None = None) -> Field:
        """Rebuild a field saved by :meth:`to_dict`.

        The type is read from its spelling when that uses only built-in names (or ``types``);
        otherwise it is rebuilt from the saved JSON schema, so no user class is needed.
        """
        spelled = data.get("type", "str")
        try:
            if not isinstance(spelled, str) or len(spelled) > MAX_SPEC_CHARS:
                raise SignatureError(f"a field type is written as a short string, got {type(spelled).__name__}")
            tp = _types.annotation_from_ast(ast.parse(spelled, mode="eval").body, types or {})
        except (SignatureError, SyntaxError, RecursionError, MemoryError):
            tp = _types.type_from_schema(
                data.get("schema") or {}, name=spelled if isinstance(spelled, str) else "Model"
            )
        return cls(name=data["name"], kind=data["kind"], type=tp, desc=data.get("desc", ""))


@dataclass(frozen=True, slots=True)
class _FieldMarker:
    kind: FieldKind
    desc: str


def InputField(*, desc: str = "") -> Any:  # noqa: N802 - reads like a field declaration
    """Declare an input field in a class-based signature.

    Example:
        >>> class QA(Signature):
        ...     question: str = InputField(desc="a question")
        ...     answer: str = OutputField()
    """
    return _FieldMarker("input", desc)


def OutputField(*, desc: str = "") -> Any:  # noqa: N802
    """Declare an output field in a class-based signature (see :func:`InputField`)."""
    return _FieldMarker("output", desc)


class Signature:
    """An immutable, ordered set of input and output fields plus an instruction.

    Args:
        spec: ``"inputs -> outputs"``; each side is a comma-separated list of
            ``name``, ``name: type`` or ``name: type = 'description'``.
        instructions: the task instruction; a generic one is derived from the fields if omitted.
        types: extra names usable in type annotations, e.g. ``{"Answer": Answer}``.
        name: a name for the signature (class-based signatures use the class name).

    Raises:
        SignatureError: the string is malformed, a name repeats, or there is no output.
    """

    __slots__ = ("_fields", "_hash", "_inputs", "_instructions", "_name", "_outputs")
    _class_signature: Signature | None = None

    def __init__(
        self,
        spec: str | None = None,
        instructions: str | None = None,
        *,
        types: Mapping[str, Any] | None = None,
        name: str | None = None,
        fields: tuple[Field, ...] | None = None,
    ) -> None:
        if fields is None:
            if spec is None:
                raise SignatureError("Signature needs a string like 'question -> answer' or fields=")
            fields = _parse_spec(spec, types or {})
        _check_fields(fields)
        self._instructions = instructions.strip() if instructions else None
        self._name = name or "Signature"
        self._set_fields(tuple(fields))

    def _set_fields(self, fields: tuple[Field, ...]) -> None:
        # Derived views are computed once: signatures are immutable and read on every call.
        self._fields = fields
        self._inputs = MappingProxyType({f.name: f for f in fields if f.kind == "input"})
        self._outputs = MappingProxyType({f.name: f for f in fields if f.kind == "output"})
        self._hash: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._class_signature = _from_class(cls)

    # ---- reading ----

    @property
    def name(self) -> str:
        """The signature's name (the class name for class-based signatures)."""
        return self._name

    @property
    def fields(self) -> tuple[Field, ...]:
        """All fields, inputs first, in declaration order."""
        return self._fields

    @property
    def input_fields(self) -> Mapping[str, Field]:
        """Input fields by name, in order (read-only)."""
        return self._inputs

    @property
    def output_fields(self) -> Mapping[str, Field]:
        """Output fields by name, in order (read-only)."""
        return self._outputs

    @property
    def instructions(self) -> str:
        """The instruction: the one given, or one derived from the field names."""
        if self._instructions:
            return self._instructions
        ins = ", ".join(f"`{n}`" for n in self.input_fields)
        outs = ", ".join(f"`{n}`" for n in self.output_fields)
        return f"Given the fields {ins}, produce the fields {outs}." if ins else f"Produce the fields {outs}."

    def __getitem__(self, name: str) -> Field:
        for f in self._fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def __iter__(self) -> Iterator[Field]:
        return iter(self._fields)

    # ---- copies ----

    def _copy(self, *, fields: tuple[Field, ...] | None = None, instructions: Any = ...) -> Signature:
        new = Signature.__new__(Signature)
        if fields is not None:
            _check_fields(fields)
        new._instructions = self._instructions if instructions is ... else instructions
        new._name = self._name
        new._set_fields(fields if fields is not None else self._fields)
        return new

    def with_instructions(self, instructions: str) -> Signature:
        """A copy with another instruction."""
        return self._copy(instructions=instructions.strip() or None)

    def with_updated_field(self, name: str, *, type: Any = ..., desc: str | None = None) -> Signature:  # noqa: A002
        """A copy where field ``name`` has a new type and/or description."""
        old = self[name]
        new = replace(old, type=old.type if type is ... else type, desc=old.desc if desc is None else desc)
        return self._copy(fields=tuple(new if f.name == name else f for f in self._fields))

    def append(self, name: str, kind: FieldKind, *, type: Any = str, desc: str = "") -> Signature:  # noqa: A002
        """A copy with a new field after the others of its kind."""
        field = Field(name, kind, type, desc)
        ins = [f for f in self._fields if f.kind == "input"]
        outs = [f for f in self._fields if f.kind == "output"]
        (ins if kind == "input" else outs).append(field)
        return self._copy(fields=tuple(ins + outs))

    def prepend(self, name: str, kind: FieldKind, *, type: Any = str, desc: str = "") -> Signature:  # noqa: A002
        """A copy with a new field before the others of its kind."""
        field = Field(name, kind, type, desc)
        ins = [f for f in self._fields if f.kind == "input"]
        outs = [f for f in self._fields if f.kind == "output"]
        (ins if kind == "input" else outs).insert(0, field)
        return self._copy(fields=tuple(ins + outs))

    def delete(self, name: str) -> Signature:
        """A copy without field ``name``."""
        self[name]  # KeyError for an unknown field
        return self._copy(fields=tuple(f for f in self._fields if f.name != name))

    # ---- equality, text, data ----

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return self._fields == other._fields and self.instructions == other.instructions

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((tuple((f.name, f.kind, f.desc) for f in self._fields), self.instructions))
        return self._hash

    def __str__(self) -> str:
        def side(kind: str) -> str:
            parts = []
            for f in self._fields:
                if f.kind != kind:
                    continue
                text = f.name
                if f.type is not str:
                    text += f": {_types.type_to_str(f.type)}"
                if f.desc:
                    text += f" = {f.desc!r}" if f.type is not str else f": str = {f.desc!r}"
                parts.append(text)
            return ", ".join(parts)

        return f"{side('input')} -> {side('output')}"

    def __repr__(self) -> str:
        return f"Signature({str(self)!r}, instructions={self.instructions!r})"

    def to_dict(self) -> dict[str, Any]:
        """JSON data for artifacts: name, instruction and every field with its type and schema."""
        return {
            "name": self._name,
            "instructions": self.instructions,
            "fields": [f.to_dict() for f in self._fields],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, types: Mapping[str, Any] | None = None) -> Signature:
        """Rebuild a signature saved by :meth:`to_dict`, without needing the original class."""
        fields = tuple(Field.from_dict(f, types=types) for f in data["fields"])
        return cls(fields=fields, instructions=data.get("instructions"), name=data.get("name"))


def ensure_signature(value: str | Signature | type[Signature], *, types: Mapping[str, Any] | None = None) -> Signature:
    """Accept a signature string, instance or class and return a Signature instance.

    Raises:
        SignatureError: ``value`` is none of those.
    """
    if isinstance(value, Signature):
        return value
    if isinstance(value, str):
        return Signature(value, types=types)
    if isinstance(value, type) and issubclass(value, Signature) and value._class_signature is not None:
        return value._class_signature
    raise SignatureError(
        f"expected a signature string like 'question -> answer', a Signature or a Signature subclass; "
        f"got {type(value).__name__}"
    )


# ---------------------------------------------------------------- parsing


def _split_arrow(spec: str) -> tuple[str, str]:
    """Split at the one top-level '->' (ignoring arrows inside strings)."""
    arrows: list[int] = []
    try:
        lines = spec.splitlines(keepends=True)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line))
        for tok in tokenize.generate_tokens(io.StringIO(spec).readline):
            if tok.type == tokenize.OP and tok.string == "->":
                row, col = tok.start
                arrows.append(offsets[row - 1] + col)
    except (tokenize.TokenError, SyntaxError, RecursionError) as exc:
        raise SignatureError(f"cannot read signature {spec!r}: {exc}") from None
    if len(arrows) != 1:
        found = "no" if not arrows else str(len(arrows))
        raise SignatureError(
            f"a signature string needs exactly one '->' between inputs and outputs, found {found} "
            f"in {spec!r}; write it like 'context, question -> answer'"
        )
    return spec[: arrows[0]], spec[arrows[0] + 2 :]


def _parse_side(text: str, kind: FieldKind, extra: Mapping[str, Any], spec: str) -> list[Field]:
    text = text.strip()
    if not text:
        return []
    try:
        tree = ast.parse(f"def _f(*, {text}): pass")
    except (SyntaxError, RecursionError, MemoryError):
        raise SignatureError(
            f"cannot read the {kind} fields {text!r} of signature {spec!r}; write fields as "
            "'name', 'name: type' or \"name: type = 'description'\", separated by commas"
        ) from None
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    args = func.args
    if args.args or args.posonlyargs or args.vararg or args.kwarg:
        raise SignatureError(f"unexpected syntax in the {kind} fields of {spec!r}")
    fields = []
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        tp = _types.annotation_from_ast(arg.annotation, extra) if arg.annotation is not None else str
        desc = ""
        if default is not None:
            if not (isinstance(default, ast.Constant) and isinstance(default.value, str)):
                raise SignatureError(
                    f"field {arg.arg!r} in {spec!r}: only a quoted description may follow '=', "
                    f"got {ast.unparse(default)!r}"
                )
            desc = default.value
        fields.append(Field(arg.arg, kind, tp, desc))
    return fields


def _parse_spec(spec: str, extra: Mapping[str, Any]) -> tuple[Field, ...]:
    if not isinstance(spec, str):
        raise SignatureError(f"a signature string was expected, got {type(spec).__name__}")
    if len(spec) > MAX_SPEC_CHARS:
        raise SignatureError(
            f"a signature string is at most {MAX_SPEC_CHARS} characters, got {len(spec)}; "
            "describe long fields in their desc or in the instructions"
        )
    left, right = _split_arrow(spec)
    return tuple(_parse_side(left, "input", extra, spec) + _parse_side(right, "output", extra, spec))


_RESERVED = {
    "self": "every program and predictor method takes `self` as its own first parameter, so "
    "`predict(self=...)` cannot pass it",
}


def _check_name(name: Any) -> None:
    """Refuse a field name that could not be passed by keyword or written back as a string."""
    if not isinstance(name, str) or not name.isidentifier():
        raise SignatureError(f"field name {name!r} is not a valid Python identifier; use letters, digits and '_'")
    if keyword.iskeyword(name):
        raise SignatureError(
            f"field name {name!r} is a Python keyword, so it cannot be passed as predict({name}=...); "
            f"rename it, e.g. {name + '_'!r}"
        )
    if name in _RESERVED:
        raise SignatureError(f"field name {name!r} is reserved: {_RESERVED[name]}; rename it, e.g. {name + '_'!r}")
    if name.startswith("_"):
        raise SignatureError(
            f"field name {name!r} starts with '_', which oobleck keeps for its own attributes; "
            f"rename it, e.g. {name.lstrip('_') or 'field'!r}"
        )
    if unicodedata.normalize("NFKC", name) != name:
        raise SignatureError(
            f"field name {name!r} is not in Unicode NFKC form (Python reads it as "
            f"{unicodedata.normalize('NFKC', name)!r}); write it that way"
        )


def _check_type(f: Field) -> None:
    """Refuse a type pydantic cannot validate or describe as JSON schema (``dict[str]``...)."""
    try:
        _types.check_usable(f.type)
    except SignatureError as exc:
        raise SignatureError(f"field {f.name!r}: {exc}") from None


def _check_fields(fields: tuple[Field, ...]) -> None:
    seen: set[str] = set()
    for f in fields:
        _check_name(f.name)
        _check_type(f)
        if f.name in seen:
            raise SignatureError(f"field {f.name!r} appears twice; every field needs its own name")
        if f.kind not in ("input", "output"):
            raise SignatureError(f"field {f.name!r} has kind {f.kind!r}; expected 'input' or 'output'")
        seen.add(f.name)
    if not any(f.kind == "output" for f in fields):
        raise SignatureError("a signature needs at least one output field, e.g. 'question -> answer'")


def _from_class(cls: type) -> Signature:
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:  # NameError, TypeError from unresolvable annotations
        raise SignatureError(f"cannot resolve the field types of {cls.__name__}: {exc}") from exc
    fields = []
    for name in cls.__dict__.get("__annotations__", {}):
        marker = cls.__dict__.get(name)
        if not isinstance(marker, _FieldMarker):
            if name.startswith("_"):
                continue
            raise SignatureError(f"{cls.__name__}.{name} needs a value of InputField(...) or OutputField(...)")
        fields.append(Field(name, marker.kind, hints.get(name, str), marker.desc))
    for name, value in cls.__dict__.items():
        if isinstance(value, _FieldMarker) and name not in cls.__dict__.get("__annotations__", {}):
            fields.append(Field(name, value.kind, str, value.desc))
    inputs = [f for f in fields if f.kind == "input"]
    outputs = [f for f in fields if f.kind == "output"]
    doc = cls.__doc__
    return Signature(fields=tuple(inputs + outputs), instructions=doc.strip() if doc else None, name=cls.__name__)
