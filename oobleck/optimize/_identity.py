"""What identifies a program to the optimizers: its parameters, its candidate key, its format.

:func:`program_fingerprint` is the program's parameters as JSON data (what a checkpoint names
the compile by), :func:`candidate_key` a short hash of everything that changes the prompts it
sends (two candidates with one key share their scores), :func:`format_of` the name of the
prompt format it uses.
"""

from __future__ import annotations

import hashlib
from typing import Any

from oobleck import _types
from oobleck._hashing import canonical_json
from oobleck.module import Module

__all__ = ["candidate_key", "format_of", "program_fingerprint"]


def program_fingerprint(program: Module) -> list[Any]:
    """The parameters of ``program`` as JSON data: names, signatures, instructions, demos."""
    return [
        {
            "name": name,
            "signature": str(p.signature),
            "instructions": p.instructions,
            "demos": [_types.to_jsonable(dict(d)) for d in p.demos],
            "config": _types.to_jsonable(p.config),
        }
        for name, p in program.named_predictors()
    ]


def candidate_key(program: Module) -> str:
    """A short hash of everything in ``program`` that changes the prompts it sends.

    Two candidates with the same key send the same requests, so they share their scores.
    """
    data = program_fingerprint(program)
    for entry, (_, p) in zip(data, program.named_predictors()):
        adapter = p.adapter
        if adapter is not None:
            options = adapter.options()
            entry["adapter"] = {"name": adapter.name, "version": adapter.version, "options": options}
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16]


def format_of(program: Module) -> str | None:
    """The format name of ``program``'s first predictor (None: its default adapter)."""
    from oobleck.adapters.template import format_name

    adapter = program.predictors()[0].adapter
    return None if adapter is None else format_name(adapter)
