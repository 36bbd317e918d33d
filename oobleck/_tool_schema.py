"""Tools described by a JSON schema instead of a function's annotations.

:class:`SchemaTool` is a :class:`~oobleck.Tool` whose argument model is rebuilt from a JSON
schema: an MCP server's ``inputSchema`` (:mod:`oobleck.tool_mcp`), or a tool spec saved in an
artifact, which :func:`placeholder_tool` turns into a stand-in that describes the tool but cannot
run it (``oobleck inspect`` reads an agent without its functions).
"""

from __future__ import annotations

import contextlib
import contextvars
import keyword
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pydantic

from oobleck import _types
from oobleck.errors import ArtifactError, ConfigError, ToolError
from oobleck.tool import DEFAULT_MAX_CHARS, DEFAULT_TIMEOUT, Tool, arguments

__all__ = ["SchemaTool", "placeholder_tool", "placeholders", "placeholders_allowed", "schema_model"]

_LONGEST_DESCRIPTION = 1000


class SchemaTool(Tool):
    """A tool whose arguments follow a JSON schema and whose call is ``call(**arguments)``.

    Args:
        call: called with the validated arguments as JSON values, by their schema names.
        name: the tool's name (characters a tool name may not hold become ``_``).
        description: what it does (whitespace collapsed, at most 1000 characters).
        schema: the arguments' JSON schema (an object schema).
        timeout: seconds a call may take (None: no limit).
        max_chars: the longest observation.

    Raises:
        ConfigError: the schema is not an object schema or cannot be rebuilt, or a bad
            ``timeout`` / ``max_chars``.
    """

    def __init__(
        self,
        call: Callable[..., Any],
        *,
        name: str,
        description: str,
        schema: Mapping[str, Any],
        timeout: float | None = DEFAULT_TIMEOUT,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        if max_chars < 1:
            raise ConfigError(f"max_chars must be >= 1, got {max_chars!r}")
        # Not Tool.__init__: the arguments come from the schema, not from annotations.
        self.func = call
        self.name = safe_name(name)
        self.description = " ".join(str(description).split())[:_LONGEST_DESCRIPTION]
        self.timeout = timeout
        self.max_chars = max_chars
        self.is_async = False
        self.args_model = schema_model(self.name, schema)

    def validate(self, args: Mapping[str, Any] | pydantic.BaseModel | None) -> dict[str, Any]:
        """The arguments checked against the schema, as JSON by their schema names.

        Only the arguments given are kept (whoever runs the tool applies its own defaults).

        Raises:
            pydantic.ValidationError: the arguments do not fit the schema.
        """
        if isinstance(args, pydantic.BaseModel):
            args = args.model_dump(exclude_unset=True, by_alias=True)
        model = self.args_model.model_validate(arguments(args))
        dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return dumped


def safe_name(name: str) -> str:
    """``name`` as a tool name: letters, digits, ``_`` and ``-``, at most 64, not ``finish``.

    Example:
        >>> safe_name("files.read"), safe_name("3d"), safe_name("finish")
        ('files_read', '_3d', 'finish_')
    """
    out = re.sub(r"[^A-Za-z0-9_\-]", "_", name)[:64] or "tool"
    if out[0].isdigit() or out[0] == "-":
        out = "_" + out[:63]
    return "finish_" if out == "finish" else out


def _omit_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def schema_model(name: str, schema: Mapping[str, Any]) -> type[pydantic.BaseModel]:
    """A pydantic model for a tool's JSON ``inputSchema`` (an object of named arguments).

    Each property's type is rebuilt from its schema (nested objects, enums, lists; a part that
    cannot be rebuilt accepts any JSON value); required properties stay required, the others
    get the schema's default or may be left out. A property whose name is not a Python
    identifier keeps it as its alias. Unknown arguments are refused.

    Raises:
        ConfigError: the schema is not an object schema.

    Example:
        >>> model = schema_model("f", {"type": "object", "properties": {"q": {"type": "string"},
        ...     "max-hits": {"type": "integer", "default": 3}}, "required": ["q"]})
        >>> model.model_validate({"q": "x"}).model_dump(by_alias=True)
        {'q': 'x', 'max-hits': 3}
    """
    props = schema.get("properties") or {}
    if schema.get("type", "object") != "object" or not isinstance(props, dict):
        raise ConfigError(f"tool {name!r}: its inputSchema must be an object schema, got {str(dict(schema))[:200]}")
    listed = schema.get("required")
    required: list[Any] = listed if isinstance(listed, list) else []
    defs = schema.get("$defs") or schema.get("definitions") or {}
    fields: dict[str, Any] = {}
    for i, (key, sub) in enumerate(props.items()):
        sub = sub if isinstance(sub, dict) else {}
        try:
            tp = _types.type_from_schema(sub, defs if isinstance(defs, dict) else {}, name=f"{name}_{i}")
        except ArtifactError:
            tp = Any
        safe = key.isidentifier() and not keyword.iskeyword(key) and not key.startswith(("_", "model_"))
        field_name = key if safe else f"arg_{i}"
        options: dict[str, Any] = {"description": sub.get("description") or None}
        if not safe:
            options["alias"] = key
        if key in required:
            default: Any = ...
        elif "default" in sub:
            default = sub["default"]
        else:
            default, options["json_schema_extra"] = None, _omit_default
        fields[field_name] = (tp, pydantic.Field(default, **options))
    model_name = "".join(part.title() for part in re.split(r"[_\-]+", name) if part) + "Args"
    config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)
    try:
        model: type[pydantic.BaseModel] = pydantic.create_model(model_name or "Args", __config__=config, **fields)
        model.model_json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError, ValueError) as exc:
        raise ConfigError(f"tool {name!r}: its inputSchema cannot be rebuilt as an argument model ({exc})") from None
    return model


class _Placeholder(SchemaTool):
    """A saved tool's stand-in: it describes the tool and reports that it is not bound."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.saved_args = dict(spec.get("args") or {})
        name = str(spec.get("name") or "tool")

        def unbound(**_: Any) -> Any:
            raise ToolError(f"tool {name!r} is not bound: load the artifact with oobleck.load(path, tools=[...])")

        super().__init__(unbound, name=name, description=str(spec.get("description") or ""), schema=self.saved_args)

    @property
    def args_schema(self) -> dict[str, Any]:
        """The schema as saved (so the artifact's own check passes)."""
        return self.saved_args


def placeholder_tool(spec: Mapping[str, Any]) -> Tool:
    """A stand-in for a saved tool spec (name, description, args): it describes, never runs.

    Raises:
        ArtifactError: the saved argument schema cannot be rebuilt.
    """
    try:
        return _Placeholder(spec)
    except ConfigError as exc:
        raise ArtifactError(f"the saved tool {spec.get('name')!r} has an unreadable argument schema: {exc}") from None


_PLACEHOLDERS: contextvars.ContextVar[bool] = contextvars.ContextVar("oobleck_tool_placeholders", default=False)


@contextlib.contextmanager
def placeholders() -> Iterator[None]:
    """Within it, an agent loaded without tools gets stand-ins (to read it, not to run it)."""
    token = _PLACEHOLDERS.set(True)
    try:
        yield
    finally:
        _PLACEHOLDERS.reset(token)


def placeholders_allowed() -> bool:
    """Whether a load in progress may bind stand-ins for tools it was not given."""
    return _PLACEHOLDERS.get()
