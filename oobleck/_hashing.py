"""Content identity: canonical JSON, and the hashes of data that name a compile.

The same data always gives the same text, so its sha256 can identify a trainset in provenance,
a compile in a checkpoint, or a candidate in a search.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from oobleck.example import to_data

__all__ = ["canonical_json", "rows_sha256"]


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: the same data always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def rows_sha256(rows: Iterable[Mapping[str, Any]] | None) -> str | None:
    """SHA-256 of the canonical JSON of ``rows`` (None for None)."""
    if rows is None:
        return None
    return hashlib.sha256(canonical_json([to_data(r) for r in rows]).encode()).hexdigest()
