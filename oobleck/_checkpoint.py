"""Checkpoints: the JSON file an optimizer rewrites as it makes progress.

A compile that was interrupted (or stopped by its budget) resumes where it left off. Together
with an LM cache, a resumed compile pays for no call twice; without one, it pays again only for
the rows of the candidate in progress that finished after the last save.

Beside the checkpoint, a :class:`Ledger` (``<checkpoint>.ledger``) records each reservation and
settlement of the compile's budget as it happens, so a compile killed mid-call and resumed
counts every call that was sent, not only those before the last save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oobleck._files import atomic_write, read_regular
from oobleck._hashing import canonical_json
from oobleck._version import __version__
from oobleck.errors import ArtifactError, ConfigError, WriteError
from oobleck.lm.types import Usage, usage_dict

__all__ = ["CHECKPOINT_SCHEMA", "Checkpoint", "Ledger"]

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

    def exists(self) -> bool:
        """Whether a checkpoint file is there to resume from."""
        return self.path is not None and self.path.exists()

    def ledger(self) -> Ledger | None:
        """The ledger beside this checkpoint (None when checkpointing is off)."""
        return None if self.path is None else Ledger(Path(f"{self.path}.ledger"), self.fingerprint)

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


LEDGER_MAX_BYTES = 1 << 30
"""The largest ledger read back (about five million calls)."""


class Ledger:
    """An append-only file of every reservation and settlement of one compile's budget.

    Each line is JSON: ``{"held": [calls, tokens]}`` when a call is reserved (written before it
    is sent) and ``{"held": [-calls, -tokens], "usage": {...}}`` when it is settled. What a
    compile spent is the sum of the settled usage plus what is still held: a call that was in
    flight when the process was killed counts as sent, with its reserved tokens. A line cut
    short by a kill is ignored.

    Args:
        path: the file.
        fingerprint: the compile it belongs to (its first line); another compile's ledger is
            started over.
    """

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self._fd: int | None = None

    def open(self, *, resume: bool) -> Usage | None:
        """Open for appending; with ``resume``, what the ledger recorded (None: no usable ledger).

        Without ``resume`` (or with a ledger of another compile), the file is started over.
        """
        spent = self._read() if resume else None
        if spent is None:
            header = json.dumps({"fingerprint": self.fingerprint, "schema_version": CHECKPOINT_SCHEMA}) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, header.encode("utf-8"))
        try:  # appended to in place: never through a link put there since it was written
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise WriteError(f"cannot append to the budget ledger {self.path}: {exc.strerror or exc}") from None
        if spent is not None and not self._ends_a_line():
            # a kill cut the last line short: end it, or the next record would be glued onto it and lost
            os.write(self._fd, b"\n")
        return spent

    def _ends_a_line(self) -> bool:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0:
            return True
        with open(self.path, "rb") as fh:
            fh.seek(size - 1)
            return fh.read(1) == b"\n"

    def record(self, calls: int, tokens: int, usage: Usage | None) -> None:
        """Append one reservation (``usage`` None) or settlement."""
        if self._fd is None:
            return
        line: dict[str, Any] = {"held": [calls, tokens]}
        if usage is not None:
            line["usage"] = usage_dict(usage)
        os.write(self._fd, (json.dumps(line, sort_keys=True) + "\n").encode("utf-8"))

    def close(self) -> None:
        """Stop appending."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _read(self) -> Usage | None:
        if not self.path.exists():
            return None
        try:
            text = read_regular(self.path, what="budget ledger", max_bytes=LEDGER_MAX_BYTES).decode("utf-8", "replace")
        except (ArtifactError, OSError) as exc:
            log.warning("ignoring unreadable budget ledger %s (%s)", self.path, exc)
            return None
        lines = text.split("\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("fingerprint") != self.fingerprint:
            log.warning("budget ledger %s belongs to another compile; starting it over", self.path)
            return None
        total = Usage()
        held = [0, 0]
        for raw in lines[1:]:
            try:
                line = json.loads(raw)
                calls, tokens = (int(v) for v in line["held"])
                usage = Usage(**line["usage"]) if "usage" in line else None
            except (ValueError, TypeError, KeyError):
                continue  # an empty last line, or one a kill cut short
            held[0] += calls
            held[1] += tokens
            if usage is not None:
                total = total + usage
        return total + Usage(calls=max(held[0], 0), prompt_tokens=max(held[1], 0))
