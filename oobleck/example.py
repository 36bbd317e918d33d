"""Examples (training and evaluation rows) and Predictions (what a program returns)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from typing import Any, TypeVar

from oobleck import _types
from oobleck.lm.types import Usage

__all__ = ["Example", "Prediction", "from_data", "to_data"]

_E = TypeVar("_E", bound="Example")


class Example(Mapping[str, Any]):
    """A row of named values, some of which are marked as the program's inputs.

    Fields read as attributes or keys. Examples are immutable: ``with_inputs`` and ``copy``
    return new ones.

    Example:
        >>> ex = Example(question="2+2?", answer="4").with_inputs("question")
        >>> ex.inputs()
        {'question': '2+2?'}
        >>> ex.labels()
        {'answer': '4'}
    """

    __slots__ = ("_data", "_input_keys")
    _data: dict[str, Any]
    _input_keys: tuple[str, ...] | None

    def __init__(self, data: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        merged = dict(data or {})
        merged.update(fields)
        object.__setattr__(self, "_data", merged)
        object.__setattr__(self, "_input_keys", None)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; it has {sorted(self._data)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .copy({name}=...)")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Example):
            return self._data == other._data and self._input_keys == other._input_keys
        return NotImplemented

    def __hash__(self) -> int:
        # equal examples must hash equal: repr differs for {'a': 1, 'b': 2} and {'b': 2, 'a': 1}, or 1 and 1.0
        return hash(tuple(sorted((k, _value_hash(v)) for k, v in self._data.items())))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"{type(self).__name__}({body})"

    @property
    def input_keys(self) -> tuple[str, ...] | None:
        """The names marked as inputs, or None if ``with_inputs`` was never called."""
        return self._input_keys

    def with_inputs(self: _E, *keys: str) -> _E:
        """A copy whose inputs are ``keys``; the other fields are labels."""
        missing = [k for k in keys if k not in self._data]
        if missing:
            raise KeyError(f"with_inputs: {missing} not in this example's fields {sorted(self._data)}")
        new = self.copy()
        object.__setattr__(new, "_input_keys", tuple(keys))
        return new

    def inputs(self) -> dict[str, Any]:
        """The input fields (requires ``with_inputs``)."""
        if self._input_keys is None:
            raise ValueError("this Example has no inputs marked; call .with_inputs('field', ...) first")
        return {k: self._data[k] for k in self._input_keys}

    def labels(self) -> dict[str, Any]:
        """Every field that is not an input."""
        keys = self._input_keys or ()
        return {k: v for k, v in self._data.items() if k not in keys}

    def copy(self: _E, **updates: Any) -> _E:
        """A copy with some fields replaced or added."""
        new = type(self).__new__(type(self))
        object.__setattr__(new, "_data", {**self._data, **updates})
        object.__setattr__(new, "_input_keys", self._input_keys)
        for slot in getattr(type(self), "__slots__", ()):
            if slot not in ("_data", "_input_keys") and hasattr(self, slot):
                object.__setattr__(new, slot, getattr(self, slot))
        return new

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return dict(self._data)


class Prediction(Example):
    """The outputs of a program call, with the usage it cost.

    Attributes:
        usage: tokens, calls, cache hits and latency of the whole call that produced it.
        completions: with ``n > 1``, the parsed fields of every completion that parsed
            (the prediction's own fields are the first); otherwise None.
        warnings: what went wrong without failing the call, e.g. an answer cut short at
            ``max_tokens`` that still parsed (see ``oobleck.context(on_truncation=...)``).
        probabilities: for labels that were scored (``Predict(mode="score")``), each label
            output's distribution over its labels as the answer uses it (calibrated, when a
            calibration applies), e.g. ``{"label": {"positive": 0.81, "negative": 0.19}}``;
            None for generated answers.
        raw_probabilities: the same distributions before calibration (equal to
            ``probabilities`` when none applies); None for generated answers.
    """

    __slots__ = ("completions", "probabilities", "raw_probabilities", "usage", "warnings")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        /,
        *,
        usage: Usage | None = None,
        warnings: tuple[str, ...] = (),
        **fields: Any,
    ):
        super().__init__(data, **fields)
        object.__setattr__(self, "usage", usage or Usage())
        object.__setattr__(self, "completions", None)
        object.__setattr__(self, "warnings", tuple(warnings))
        object.__setattr__(self, "probabilities", None)
        object.__setattr__(self, "raw_probabilities", None)

    def with_usage(self, usage: Usage) -> Prediction:
        """The same prediction with another usage record."""
        new = self.copy()
        object.__setattr__(new, "usage", usage)
        return new


def _value_hash(value: Any) -> int:
    """A hash equal values share (an unhashable value counts by its type family and size)."""
    if isinstance(value, (set, frozenset)):
        return hash(frozenset(value))  # a set and a frozenset can be equal
    try:
        return hash(value)
    except TypeError:
        return len(value) if isinstance(value, Sized) else 0


def to_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as JSON data: its fields and which of them are inputs (None when none were marked).

    The one way rows are written into checkpoints, data hashes and saved module state.
    """
    keys = row.input_keys if isinstance(row, Example) else None
    # a set (gold answers, say) becomes a sorted list: its own order changes per process
    fields = _types.to_jsonable(_types.stable_order(dict(row)))
    return {"fields": fields, "inputs": list(keys) if keys is not None else None}


def from_data(data: Mapping[str, Any]) -> Example:
    """Rebuild a row written by :func:`to_data`."""
    ex = Example(data["fields"])
    return ex.with_inputs(*data["inputs"]) if data.get("inputs") is not None else ex
