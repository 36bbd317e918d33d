"""The program graph inside an artifact: which modules hold which predictors.

Saving walks the program the way :meth:`Module.named_predictors` does and records every module
on the way, with its type name (the class name) and import path. Loading rebuilds modules whose
type is built in (ChainOfThought, RAG, ...) or passed in ``load(..., module_types={name: cls})``;
the import path of any other class is kept as text to read, never imported, and the module
comes back as a :class:`FrozenModule` that holds the same predictors under the same names.
There is no process-wide registry: what a load may rebuild is what that call was given.

Extension point: a module class may define ``dump_extra(self, files) -> dict`` (JSON state
beyond its predictors, with binary parts written to ``files``, a
:class:`~oobleck.artifact.SideFiles`) and ``load_extra(self, extra, files)`` (restore that
state on an instance rebuilt with its predictor attributes set but ``__init__`` not run).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from oobleck.artifact._schema import (
    DictNode,
    EmptyNode,
    ListNode,
    ModuleNode,
    PredictorNode,
    jsonable,
)
from oobleck.artifact._side_files import SideFiles
from oobleck.errors import ArtifactError
from oobleck.module import Module
from oobleck.predict import Predict

__all__ = ["FrozenModule"]

# Module types oobleck itself ships; the import paths are code, never read from a file.
_BUILTIN_TYPES: dict[str, tuple[str, str]] = {
    "BestOfN": ("oobleck.modules.best_of_n", "BestOfN"),
    "ChainOfThought": ("oobleck.modules.chain_of_thought", "ChainOfThought"),
    "Ensemble": ("oobleck.modules.ensemble", "Ensemble"),
    "KNNFewShot": ("oobleck.modules.knn", "KNNFewShot"),
    "MultiHop": ("oobleck.modules.multihop", "MultiHop"),
    "RAG": ("oobleck.modules.rag", "RAG"),
    "Refine": ("oobleck.modules.refine", "Refine"),
    "ReAct": ("oobleck.modules.react", "ReAct"),
    "Retrieve": ("oobleck.retrieve.module", "Retrieve"),
}


def type_name_of(cls: type) -> str:
    """The type name written for a module class: its built-in name, else its class name."""
    for key, (mod, attr) in _BUILTIN_TYPES.items():
        if cls.__module__ == mod and cls.__qualname__ == attr:
            return key
    return cls.__name__


def check_module_types(module_types: Mapping[str, Any] | None) -> dict[str, type[Module]]:
    """Validate ``load(..., module_types=)``: type names to Module subclasses (not Predict)."""
    checked: dict[str, type[Module]] = {}
    for name, cls in (module_types or {}).items():
        if (
            not isinstance(name, str)
            or not (isinstance(cls, type) and issubclass(cls, Module))
            or issubclass(cls, Predict)
        ):
            raise ArtifactError(
                f"module_types maps type names to Module subclasses (not Predict); got {name!r}: {cls!r}"
            )
        checked[name] = cls
    return checked


def resolve_type(name: str, class_path: str, module_types: Mapping[str, type[Module]]) -> type[Module] | None:
    """The class for a type name from a file, or None (the module loads as a FrozenModule).

    The class is one passed in ``module_types``, or a built-in one whose class path matches.
    """
    if name in module_types:
        return module_types[name]
    if name in _BUILTIN_TYPES:
        mod, attr = _BUILTIN_TYPES[name]
        if class_path != f"{mod}.{attr}":
            return None  # a user class that happens to share a built-in name
        try:
            found = getattr(importlib.import_module(mod), attr, None)
        except ImportError:
            return None
        return (
            found if isinstance(found, type) and issubclass(found, Module) and not issubclass(found, Predict) else None
        )
    return None


def _is_builtin(cls: type, type_name: str | None) -> bool:
    """Whether ``cls`` is the module class oobleck ships under ``type_name``."""
    return type_name in _BUILTIN_TYPES and _class_path(cls) == ".".join(_BUILTIN_TYPES[type_name])


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class FrozenModule(Module):
    """A module loaded without its class: its predictors, under their names, but no ``forward``.

    Call its predictors directly (``artifact.predictors[name](...)``), or load the artifact
    with ``program=YourClass()`` to run your own ``forward`` with the saved parameters.
    """

    def __init__(self, class_path: str, type_name: str | None = None, extra: dict[str, Any] | None = None):
        # Dunder keys cannot collide with child attributes (artifacts refuse dunder names).
        self.__dict__["__class_path__"] = class_path
        self.__dict__["__type_name__"] = type_name
        self.__dict__["__extra__"] = extra

    @property
    def class_path(self) -> str:
        """The import path of the class that built the original module (information only)."""
        return str(self.__dict__["__class_path__"])

    def _children(self) -> Any:
        return ((k, v) for k, v in vars(self).items() if not k.startswith("__"))

    def forward(self, **inputs: Any) -> Any:
        """Always raises: the original ``forward`` is Python code, which artifacts never store."""
        kind = self.__dict__["__type_name__"]
        why = (
            f"its module type {kind!r} was not passed to load (load(path, module_types={{{kind!r}: YourClass}}) "
            "rebuilds it from your class)"
            if kind
            else "its forward() is Python code, which artifacts never store"
        )
        names = [n for n, _ in self.named_predictors()]
        raise ArtifactError(
            f"cannot run {self.class_path} from the artifact alone: {why}. Load it with "
            f"oobleck.load(path, program={self.class_path.rsplit('.', 1)[-1]}()), or call one of its "
            f"predictors directly: artifact.predictors[name](...) for name in {names}"
        )

    def dump_extra(self, files: SideFiles) -> dict[str, Any] | None:
        """The state loaded with it, unchanged (so load → save keeps it)."""
        extra = self.__dict__["__extra__"]
        return dict(extra) if extra is not None else None

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in self.named_predictors())
        return f"FrozenModule({self.class_path}: {inner})"


def holds_predictors(value: Any) -> bool:
    """Whether ``value`` is, or contains, a module (the values named_predictors walks)."""
    if isinstance(value, Module):
        return True
    if isinstance(value, (list, tuple)):
        return any(holds_predictors(v) for v in value)
    if isinstance(value, dict):
        return any(holds_predictors(v) for v in value.values())
    return False


def _check_attr(attr: Any, where: str) -> str:
    if not isinstance(attr, str) or not attr.isidentifier() or attr.startswith("__"):
        raise ArtifactError(f"{where}: attribute name {attr!r} must be an identifier without leading '__'")
    return attr


def dump_extra(obj: Any, files: SideFiles, where: str) -> dict[str, Any] | None:
    """Call ``obj.dump_extra(files)`` if its class defines it and check the result is JSON."""
    if getattr(type(obj), "dump_extra", None) is None:
        return None
    extra = obj.dump_extra(files)
    if extra is None:
        return None
    if not isinstance(extra, Mapping):
        raise ArtifactError(f"{where}: dump_extra() must return a dict of JSON data, got {type(extra).__name__}")
    return dict(jsonable(dict(extra), where=f"{where} extra state"))


class Dumper:
    """Turns a program into graph records (predictors are referenced by name)."""

    def __init__(self, names: Mapping[int, str], files: SideFiles) -> None:
        self.names = names
        self.files = files

    def node(self, value: Any, where: str) -> dict[str, Any]:
        if isinstance(value, Predict):
            return {"node": "predictor", "name": self.names[id(value)]}
        if isinstance(value, Module):
            return self._module(value, where)
        if isinstance(value, (list, tuple)):
            items = [
                self.node(v, f"{where}[{i}]") if holds_predictors(v) else {"node": "empty"} for i, v in enumerate(value)
            ]
            return {"node": "tuple" if isinstance(value, tuple) else "list", "items": items}
        if isinstance(value, dict):
            entries = []
            for key, item in value.items():
                if not holds_predictors(item):
                    continue
                if not isinstance(key, str):
                    raise ArtifactError(f"{where}: dict keys holding modules must be strings, got {key!r}")
                entries.append({"key": key, "value": self.node(item, f"{where}[{key!r}]")})
            return {"node": "dict", "items": entries}
        raise ArtifactError(f"{where}: cannot save a {type(value).__name__} in the program graph")

    def _module(self, module: Module, where: str) -> dict[str, Any]:
        if isinstance(module, FrozenModule):
            type_name, class_path = module.__dict__["__type_name__"], module.class_path
        else:
            type_name, class_path = type_name_of(type(module)), _class_path(type(module))
        children = []
        for attr, child in module._children():
            if holds_predictors(child):
                _check_attr(attr, where)
                children.append({"attr": attr, "value": self.node(child, f"{where}.{attr}")})
        record: dict[str, Any] = {"node": "module", "type": type_name, "class": class_path, "children": children}
        extra = dump_extra(module, self.files, where)
        if extra is not None:
            record["extra"] = extra
        return record


class Builder:
    """Rebuilds a program from graph records around already-built predictors."""

    def __init__(
        self,
        predictors: Mapping[str, Predict],
        files: SideFiles,
        source: str,
        module_types: Mapping[str, type[Module]] | None = None,
    ) -> None:
        self.predictors = predictors
        self.files = files
        self.source = source
        self.module_types = module_types or {}

    def node(self, record: Any, where: str) -> Any:
        if isinstance(record, PredictorNode):
            if record.name not in self.predictors:
                raise ArtifactError(
                    f"{self.source}: the program graph uses predictor {record.name!r}, which is not saved"
                )
            return self.predictors[record.name]
        if isinstance(record, EmptyNode):
            return None
        if isinstance(record, ListNode):
            items = [self.node(r, f"{where}[{i}]") for i, r in enumerate(record.items)]
            return tuple(items) if record.node == "tuple" else items
        if isinstance(record, DictNode):
            return {item.key: self.node(item.value, f"{where}[{item.key!r}]") for item in record.items}
        assert isinstance(record, ModuleNode)
        return self._module(record, where)

    def _module(self, record: ModuleNode, where: str) -> Module:
        if record.type == "Predict":
            raise ArtifactError(
                f"{self.source}: {where} is a module of type 'Predict'; predictors are 'predictor' nodes"
            )
        cls = resolve_type(record.type, record.class_, self.module_types) if record.type else None
        obj: Module
        if cls is None:
            obj = FrozenModule(record.class_, record.type, record.extra)
        else:
            obj = cls.__new__(cls)
        for child in record.children:
            attr = _check_attr(child.attr, f"{self.source}: {where}")
            if attr in obj.__dict__:
                raise ArtifactError(f"{self.source}: {where} lists attribute {attr!r} twice")
            obj.__dict__[attr] = self.node(child.value, f"{where}.{attr}")
        if cls is not None and record.extra is not None:
            call_load_extra(obj, record.extra, self.files, f"{self.source}: {where} ({record.type})")
        elif cls is not None and hasattr(cls, "load_extra") and _is_builtin(cls, record.type):
            # A built-in module always saves its state: without it, its load_extra says what
            # is missing now rather than an AttributeError at the first call.
            call_load_extra(obj, {}, self.files, f"{self.source}: {where} ({record.type}, saved without its state)")
        return obj


def call_load_extra(obj: Any, extra: Mapping[str, Any], files: SideFiles, where: str) -> None:
    """Hand saved extra state to ``obj.load_extra``, turning its failures into ArtifactError."""
    load_extra = getattr(obj, "load_extra", None)
    if load_extra is None:
        raise ArtifactError(f"{where}: the artifact has extra state but {type(obj).__name__} has no load_extra()")
    try:
        load_extra(dict(extra), files)
    except ArtifactError:
        raise
    except Exception as exc:  # the module's own validation of untrusted data
        raise ArtifactError(f"{where}: could not restore the saved state: {type(exc).__name__}: {exc}") from exc


def apply_extras(record: Any, obj: Any, files: SideFiles, where: str) -> None:
    """Walk the saved graph alongside a user's program and restore extra state where saved."""
    if isinstance(record, ModuleNode):
        if record.extra is not None and hasattr(obj, "load_extra"):
            call_load_extra(obj, record.extra, files, where)
        for child in record.children:
            value = getattr(obj, "__dict__", {}).get(child.attr)
            if value is not None:
                apply_extras(child.value, value, files, f"{where}.{child.attr}")
    elif isinstance(record, ListNode) and isinstance(obj, (list, tuple)):
        for i, (r, v) in enumerate(zip(record.items, obj)):
            apply_extras(r, v, files, f"{where}[{i}]")
    elif isinstance(record, DictNode) and isinstance(obj, dict):
        for item in record.items:
            if item.key in obj:
                apply_extras(item.value, obj[item.key], files, f"{where}[{item.key!r}]")
