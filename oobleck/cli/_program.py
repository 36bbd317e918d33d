"""Importing the user's program (a signature string, ``file.py[:attr]`` or ``module:attr``) and tools."""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CLIError", "UsageError", "load_artifact", "metric_from", "program_from", "tools_from"]


class CLIError(Exception):
    """A CLI-level error: its message is printed and the command exits with status 1."""


class UsageError(CLIError):
    """A setting that cannot work, refused before any work (exit status 2, like argparse's).

    For instance an optimizer option of the wrong type or out of range.
    """


def _import_attr(spec: str, default: str = "program") -> Any:
    """``path/to/file.py[:attr]`` or ``package.module:attr`` (default attr: ``default``)."""
    target, _, attr = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    attr = attr or default
    if target.endswith(".py"):
        module = _import_file(Path(target))
    elif Path(target).is_dir() or os.sep in target:
        # a path, not a module name: importlib would only say "No module named '/a/b'"
        found = Path(target)
        what = f"{found} is a folder" if found.is_dir() else f"{found} is not a .py file" if found.exists() else ""
        raise CLIError(f"{what or f'no such file {found}'}; expected file.py[:attr] or package.module:attr")
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise CLIError(f"cannot import {target!r}: {exc}") from exc
        except Exception as exc:
            raise CLIError(f"importing {target!r} failed: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CLIError(f"{target} has no attribute {attr!r}; name it as {target}:NAME") from None


def _import_file(path: Path) -> Any:
    """Run a user's program file as a module, shadowing nothing.

    It is registered under ``_oobleck_user.<stem>`` (a user file named ``json.py`` must not
    replace the standard library's), and its folder is on ``sys.path`` only while it runs, at
    the end, so it can import the files beside it but never hides an installed module.
    """
    if not path.is_file():
        raise CLIError(f"no such file {path}")
    path = path.resolve()
    name = f"_oobleck_user.{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise CLIError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.append(folder)
    sys.modules[name] = module  # classes defined in it find their module (dataclasses, typing)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise CLIError(f"running {path.name} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    return module


def program_from(spec: str, *, cot: bool = False) -> Any:
    """A Module from a signature string, a Python file or ``module:attr``."""
    from oobleck.module import Module
    from oobleck.modules import ChainOfThought
    from oobleck.predict import Predict

    if "->" in spec:
        return ChainOfThought(spec) if cot else Predict(spec)
    value = _import_attr(spec)
    if isinstance(value, type) and issubclass(value, Module) or callable(value) and not isinstance(value, Module):
        value = value()
    if not isinstance(value, Module):
        raise CLIError(f"{spec} is a {type(value).__name__}, not an oobleck Module")
    return value


def metric_from(spec: str, *, builtins: Sequence[str] = ()) -> Any:
    """The user's metric named by ``file.py:fn`` or ``package.module:fn`` (``file.py`` alone: ``metric``).

    A class is instantiated with no arguments (``oobleck.metrics:ExactMatch``).

    Raises:
        UsageError: not such a spec, a missing file, module or attribute, or not callable.
    """
    target, colon, attr = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not colon and not spec.endswith(".py"):
        raise UsageError(
            f"unknown metric {spec!r}; choose one of {', '.join(builtins)}, or name your own function as "
            "file.py:fn or package.module:fn"
        )
    if not target or colon and not attr:
        raise UsageError(f"--metric {spec}: expected file.py:fn or package.module:fn")
    if target.endswith(".py") and not Path(target).is_file():
        raise UsageError(f"--metric {spec}: no such file {target}")
    try:
        value = _import_attr(f"{target}:{attr}" if colon else target, default="metric")
    except CLIError as exc:
        raise UsageError(f"--metric {spec}: {exc}") from None
    if isinstance(value, type):
        try:
            value = value()
        except Exception as exc:  # noqa: BLE001 - the user's class: say what happened, no traceback
            raise UsageError(f"--metric {spec}: {value.__name__}() failed: {type(exc).__name__}: {exc}") from None
    if not callable(value):
        raise UsageError(
            f"--metric {spec}: expected a function metric(example, prediction, trace=None) returning a number "
            f"or a bool, got a {type(value).__name__}"
        )
    try:
        inspect.signature(value).bind(None, None, None)
    except TypeError as exc:  # it would fail on every row, each failure scored 0
        raise UsageError(
            f"--metric {spec}: it is called as metric(example, prediction, trace), but it cannot take those "
            f"three arguments ({exc}); define it as def {attr or 'metric'}(example, prediction, trace=None)"
        ) from None
    except ValueError:  # no signature to read (a builtin): let it run
        pass
    return value


def tools_from(specs: Sequence[str] | None) -> list[Any] | None:
    """The tools named by ``--tools`` specs (``file.py[:attr]`` or ``module:attr``, attr default ``tools``).

    Each attribute may be a function, an :class:`oobleck.Tool`, an :class:`oobleck.MCPServer`
    (all its tools; it is closed when the process exits) or a list or tuple of those.
    None when no spec is given (the artifact then needs no tools).

    Raises:
        CLIError: a spec cannot be imported or names something that is not a tool.
    """
    if not specs:
        return None
    from oobleck.tool import Tool
    from oobleck.tool_mcp import MCPServer

    tools: list[Any] = []
    for spec in specs:
        value = _import_attr(spec, default="tools")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, MCPServer):
                atexit.register(item.close)
                tools.extend(item.tools())
            elif isinstance(item, Tool) or callable(item) and not isinstance(item, type):
                tools.append(item)
            else:
                raise CLIError(
                    f"--tools {spec}: expected functions, oobleck.Tool objects or an oobleck.MCPServer "
                    f"(or a list of them), got a {type(item).__name__}"
                )
    return tools


def load_artifact(
    path: str, program: str | None, allow_models: Sequence[str] = (), tools: Sequence[str] | None = None
) -> Any:
    """Load an artifact for the CLI: with the user's program class and tools when given."""
    from oobleck.artifact import load

    return load(
        path, program=program_from(program) if program else None, allow_models=allow_models, tools=tools_from(tools)
    )
