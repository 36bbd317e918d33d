"""Checkpoints: the JSON file an optimizer rewrites as it makes progress.

A compile that was interrupted (or stopped by its budget) resumes where it left off. Together
with an LM cache, a resumed compile pays for no call twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oobleck._files import atomic_write
from oobleck._hashing import canonical_json
from oobleck._version import __version__
from oobleck.errors import ConfigError

__all__ = ["CHECKPOINT_SCHEMA", "Checkpoint"]

log = logging.getLogger("oobleck.optimize")

CHECKPOINT_SCHEMA = 1


class Checkpoint:
    """A JSON file recording an optimizer's progress, so an interrupted compile can resume.

    The file names the compile it belongs to (a fingerprint of the optimizer settings, seed,
    data and program); resuming with anything else raises ConfigError instead of mixing runs.

    Args:
        path: the file (None disables checkpointing).
        fingerprint: what identifies the compile.
    """

    def __init__(self, path: str | os.PathLike[str] | None, fingerprint: Mapping[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = hashlib.sha256(canonical_json(dict(fingerprint)).encode()).hexdigest()

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no file yet.

        Raises:
            ConfigError: the file is unreadable or belongs to another compile.
        """
        if self.path is None or not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read checkpoint {str(self.path)!r} ({exc}); delete it to start over") from exc
        if not isinstance(data, dict) or data.get("schema_version") != CHECKPOINT_SCHEMA:
            raise ConfigError(f"{str(self.path)!r} is not an oobleck checkpoint (schema {CHECKPOINT_SCHEMA})")
        if data.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"checkpoint {str(self.path)!r} was written by a different compile (other settings, seed, data "
                "or program); delete it or pass another checkpoint= path"
            )
        log.info("resuming from checkpoint %s", self.path)
        state = data.get("state")
        return state if isinstance(state, dict) else {}

    def save(self, state: Mapping[str, Any]) -> None:
        """Atomically replace the file with ``state`` (JSON data)."""
        if self.path is None:
            return
        body = {
            "schema_version": CHECKPOINT_SCHEMA,
            "oobleck_version": __version__,
            "fingerprint": self.fingerprint,
            "state": state,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))
