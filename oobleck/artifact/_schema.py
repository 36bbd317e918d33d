"""The artifact file format: frozen pydantic records, and reading untrusted JSON into them.

Everything here is data. Reading a file parses JSON (with size and nesting limits), checks the
format marker and ``schema_version``, then validates every record strictly (no coercion, no
unknown keys). Class paths in a file are strings to show, never something to import.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

from oobleck.errors import ArtifactError

FORMAT = "oobleck.artifact"
SCHEMA_VERSION = 1
MAX_BYTES = 256 * 1024 * 1024
MAX_DEPTH = 64

_FILE = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"

Short = Annotated[str, Field(max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=500)]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class MessageRecord(_Record):
    """One chat message of a stored template."""

    role: Literal["system", "user", "assistant"]
    content: str


class FieldRecord(_Record):
    """A signature field as :meth:`oobleck.signature.Field.to_dict` writes it."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["input", "output"]
    type: Annotated[str, Field(max_length=2000)]
    schema_: dict[str, Any] = Field(alias="schema")
    desc: str


class SignatureRecord(_Record):
    """A signature as :meth:`oobleck.signature.Signature.to_dict` writes it."""

    name: Short
    instructions: str
    fields: list[FieldRecord] = Field(min_length=1, max_length=500)


class AdapterRecord(_Record):
    """The prompt format a predictor was compiled with."""

    name: Short
    version: Short
    options: dict[str, bool | int | float | str | None] = Field(default_factory=dict)
    #: Why this adapter: named on the predictor, in the context, or the default for the
    #: backend's capabilities (absent in artifacts written before oobleck recorded it).
    reason: Annotated[str, Field(max_length=1000)] | None = None
    #: True: no adapter was named, so the loaded predictor chooses it (and, in mode "auto",
    #: whether to score) for the LM in use at each call; ``name`` is then the adapter the
    #: stored template was rendered with. Written only when true.
    auto: bool = False


class PredictorRecord(_Record):
    """Everything one predictor needs to run: the optimized parameters and their format."""

    name: Name
    signature: SignatureRecord
    demos: list[dict[str, Any]]
    adapter: AdapterRecord
    config: dict[str, Any]
    max_retries: Annotated[int, Field(ge=0, le=1000)] | None
    lm: dict[str, str] | None
    template: list[MessageRecord]
    extra: dict[str, Any] | None = None


class PredictorNode(_Record):
    """A place in the program graph holding the predictor called ``name``."""

    node: Literal["predictor"]
    name: Name


class ModuleNode(_Record):
    """A module: a built-in ``type`` or one in ``load(..., module_types=...)`` (rebuilt on load), or a user class."""

    node: Literal["module"]
    type: Short | None
    class_: Annotated[str, Field(max_length=500)] = Field(alias="class")
    children: list[ChildRecord]
    extra: dict[str, Any] | None = None


class ChildRecord(_Record):
    """One attribute of a module that holds predictors."""

    attr: Annotated[str, Field(min_length=1, max_length=200)]
    value: Node


class EmptyNode(_Record):
    """A list position that holds no module (kept so the other positions keep their index)."""

    node: Literal["empty"]


class ListNode(_Record):
    """A list (``node: "list"``) or tuple (``node: "tuple"``) of modules or predictors."""

    node: Literal["list", "tuple"]
    items: list[Node]


class DictItem(_Record):
    """One entry of a dict of modules or predictors."""

    key: Annotated[str, Field(max_length=200)]
    value: Node


class DictNode(_Record):
    """A dict of modules or predictors (string keys, in order)."""

    node: Literal["dict"]
    items: list[DictItem]


Node = Annotated[PredictorNode | ModuleNode | EmptyNode | ListNode | DictNode, Field(discriminator="node")]


class SideFileRecord(_Record):
    """A file next to the artifact, checked by size and sha256 on load."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=_FILE)]
    path: Annotated[str, Field(min_length=1, max_length=300, pattern=_FILE)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0)]


class ArtifactDoc(_Record):
    """A whole artifact file."""

    format: Literal["oobleck.artifact"]
    schema_version: int
    oobleck_version: Short
    program: Node
    predictors: list[PredictorRecord] = Field(min_length=1)
    provenance: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    files: list[SideFileRecord] = Field(default_factory=list)


for _model in (ModuleNode, ChildRecord, ListNode, DictItem, DictNode, ArtifactDoc):
    _model.model_rebuild()


# ---------------------------------------------------------------- JSON in and out


# Objects under these keys are the user's data, where key order can be meaning (a pydantic
# model's fields render in their order; a JSON schema lists properties in field order), so
# they keep their order. Every other object is written with sorted keys.
_ORDERED = frozenset({"demos", "schema", "extra"})


def canonical(value: Any, *, ordered: bool = False) -> Any:
    """``value`` with the keys of every structural object sorted (data objects keep their order)."""
    if isinstance(value, Mapping):
        if ordered:
            return {k: canonical(v, ordered=True) for k, v in value.items()}
        return {k: canonical(value[k], ordered=k in _ORDERED) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v, ordered=ordered) for v in value]
    return value


def dumps(doc: Mapping[str, Any]) -> str:
    """Canonical artifact text: sorted structural keys, two-space indent, UTF-8, a final newline.

    The same program always gives the same text (no timestamps, sets sorted, data in its order).
    """
    try:
        return json.dumps(canonical(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as exc:  # NaN / infinity
        raise ArtifactError(f"cannot save: {exc}; replace NaN/infinite numbers with null or strings") from exc


def jsonable(value: Any, *, where: str) -> Any:
    """Plain JSON data for a value (pydantic models, enums, tuples, sets, dates, numpy numbers).

    Raises:
        ArtifactError: the value (or something inside it) has no JSON form.
    """
    from oobleck import _types

    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArtifactError(f"{where}: {value!r} is not JSON; use null or a string")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ArtifactError(f"{where}: dict key {key!r} is not a string")
            out[str(key) if not isinstance(key, str) else key] = jsonable(item, where=f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        # Set order depends on string hashing, which changes per process: sort for stable files.
        items = [jsonable(item, where=where) for item in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if type(value).__module__ == "numpy":
        return jsonable(value.tolist() if hasattr(value, "tolist") else value.item(), where=where)
    converted = _types.to_jsonable(value)
    if converted is not value:
        return jsonable(converted, where=where)
    try:
        converted = pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError:
        raise ArtifactError(
            f"{where}: a {type(value).__module__}.{type(value).__qualname__} is not JSON data; "
            "store plain values (str, numbers, lists, dicts) or pydantic models"
        ) from None
    return jsonable(converted, where=where)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ArtifactError(f"the artifact repeats the key {key!r} in one object; it was edited or corrupted")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ArtifactError(f"the artifact contains {name}, which is not JSON; replace it with null or a string")


def decode_text(raw: bytes, *, source: str) -> str:
    """The text of an artifact file: UTF-8 (a leading byte-order mark is dropped), size checked.

    Raises:
        ArtifactError: over :data:`MAX_BYTES`, or not UTF-8.
    """
    if len(raw) > MAX_BYTES:
        raise ArtifactError(f"{source} is {len(raw)} bytes; artifacts are limited to {MAX_BYTES} bytes")
    try:
        # utf-8-sig drops a byte-order mark without copying the bytes first
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArtifactError(
            f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start}); it is not an artifact"
        ) from None


def parse_text(text: str | bytes, *, source: str) -> dict[str, Any]:
    """Parse artifact text into JSON data, checking size, encoding, nesting and format marker.

    Raises:
        ArtifactError: anything that is not an oobleck artifact this version can read.
    """
    if isinstance(text, bytes):
        text = decode_text(text, source=source)
    elif len(text) > MAX_BYTES:
        raise ArtifactError(f"{source} is {len(text)} characters; artifacts are limited to {MAX_BYTES} bytes")
    if not text or text.isspace():  # (not text.strip(): that copies the whole text)
        raise ArtifactError(f"{source} is empty; expected an oobleck artifact (JSON)")
    check_text_depth(text, source=source)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        hint = " (the file looks truncated)" if exc.pos >= len(text.rstrip()) - 1 else ""
        raise ArtifactError(
            f"{source} is not valid JSON{hint}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ArtifactError(f"{source} nests JSON too deeply to be an artifact") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise ArtifactError(f"{source} holds a value no artifact has ({exc})") from None
    check_depth(data, source=source)
    if not isinstance(data, dict):
        raise ArtifactError(f"{source} holds a JSON {type(data).__name__}; an artifact is a JSON object")
    check_header(data, source=source)
    return data


# A whole string (possessive, so the regex engine keeps no backtracking state per character;
# an unterminated one runs to the end of the text, so no quote is scanned twice) or a bracket.
# Matching strings with a plain ``(?:[^"\\]|\\.)*`` kept a frame per character: gigabytes
# of memory for a long string, the whole cost of loading a large artifact.
_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\Z)|[\[\]{}]', re.S)


def check_text_depth(text: str, *, source: str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON text nested deeper than ``limit`` before parsing it.

    The parser recurses once per level, so deep text (``"[" * 100_000``) must be refused
    without parsing. One pass counts the brackets outside strings, in constant memory and
    time linear in the text.
    """
    depth = 0
    for match in _TOKEN.finditer(text):
        char = text[match.start()]
        if char == '"':
            continue
        if char in "[{":
            depth += 1
            if depth > limit + 1:
                raise ArtifactError(f"{source} nests JSON deeper than {limit} levels; artifacts never do")
        else:
            depth -= 1


def check_depth(data: Any, *, source: str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise ArtifactError(f"{source} nests JSON deeper than {limit} levels; artifacts never do")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ArtifactError(f"{source} contains a non-finite number")


def check_header(data: Mapping[str, Any], *, source: str) -> None:
    """Check the format marker and schema version before reading anything else."""
    fmt = data.get("format")
    if fmt != FORMAT:
        keys = ", ".join(sorted(map(str, data))[:8])
        raise ArtifactError(
            f'{source} is not an oobleck artifact: expected "format": {FORMAT!r}, got {fmt!r} '
            f"(top-level keys: {keys or 'none'}). Write artifacts with program.save(path)."
        )
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ArtifactError(f"{source} has schema_version {version!r}; expected a positive integer")
    if version > SCHEMA_VERSION:
        raise ArtifactError(
            f"{source} uses artifact schema_version {version}, written by oobleck "
            f"{data.get('oobleck_version', '?')}; this oobleck reads up to schema_version {SCHEMA_VERSION}. "
            "Upgrade oobleck to load it."
        )


def validate(data: Mapping[str, Any], *, source: str) -> ArtifactDoc:
    """Validate JSON data as an :class:`ArtifactDoc`, with readable errors.

    Raises:
        ArtifactError: a missing key, an unknown key, or a value of the wrong type.
    """
    try:
        return ArtifactDoc.model_validate(data, strict=True)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
            got = repr(err.get("input"))
            got = got if len(got) <= 60 else got[:57] + "..."
            problems.append(f"{where or '(top)'}: {err['msg']} (got {got})")
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise ArtifactError(f"{source} is not a valid artifact: " + "; ".join(problems) + more) from None
    except RecursionError:
        raise ArtifactError(f"{source} nests its program graph too deeply") from None
