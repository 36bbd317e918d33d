"""Side files: binary state stored next to an artifact (soft prompts, embedding arrays).

The artifact records each side file by name, relative path (a bare file name in the artifact's
directory, never a path elsewhere), size and sha256; loading reads and checks every one before
any module sees it. Arrays are stored as ``.npy`` without pickles.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from oobleck._files import ModelPolicy, atomic_write, read_inside
from oobleck.errors import ArtifactError

__all__ = ["SideFiles"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
MAX_SIDE_BYTES = 2 * 1024 * 1024 * 1024


class SideFiles:
    """The side files of one artifact, for modules that save state that is not JSON.

    A module's ``dump_extra(files)`` calls :meth:`write` (or :meth:`write_array`) and keeps the
    returned name in its JSON state; its ``load_extra(extra, files)`` calls :meth:`read` (or
    :meth:`read_array`) with that name. Saving ``prog.json`` writes a side file named
    ``soft.safetensors`` as ``prog.soft.safetensors`` next to it.

    Example:
        >>> files = SideFiles()
        >>> files.write("notes.txt", b"hello")
        'notes.txt'
        >>> files.read("notes.txt")
        b'hello'
    """

    def __init__(self, contents: dict[str, bytes] | None = None, *, models: ModelPolicy | None = None) -> None:
        self._data: dict[str, bytes] = dict(contents or {})
        self.models = models or ModelPolicy()

    def allowed_model(self, reference: str | None, *, what: str) -> str | None:
        """A model folder the artifact names, if the user allowed it when loading (None: bundled).

        Modules call this in ``load_extra`` for any model or embedder path their state names.

        Raises:
            ArtifactError: the user did not allow it (``load(..., allow_models=[...])``).
        """
        return self.models.check(reference, what=what)

    def write(self, name: str, data: bytes) -> str:
        """Store ``data`` under ``name`` (letters, digits, ``_.-``); returns the name.

        Raises:
            ArtifactError: a bad or repeated name, or data that is not bytes.
        """
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise ArtifactError(f"side file name {name!r} must be letters, digits, '_', '.', '-' (no paths)")
        if name in self._data:
            raise ArtifactError(f"side file {name!r} is written twice; give each piece of state its own name")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ArtifactError(f"side file {name!r} needs bytes, got {type(data).__name__}")
        self._data[name] = bytes(data)
        return name

    def read(self, name: str) -> bytes:
        """The bytes stored under ``name`` (already checked against their sha256).

        Raises:
            ArtifactError: no such side file in this artifact.
        """
        try:
            return self._data[name]
        except KeyError:
            raise ArtifactError(
                f"the artifact has no side file {name!r}; it has {sorted(self._data) or 'none'}"
            ) from None

    def write_array(self, name: str, array: Any) -> str:
        """Store a numpy array as ``.npy`` (no pickles: object arrays are refused)."""
        import numpy as np

        buf = io.BytesIO()
        try:
            np.save(buf, np.asarray(array), allow_pickle=False)
        except ValueError as exc:
            raise ArtifactError(f"side file {name!r}: cannot store this array without pickle ({exc})") from exc
        return self.write(name, buf.getvalue())

    def read_array(self, name: str) -> Any:
        """A numpy array stored by :meth:`write_array` (read with ``allow_pickle=False``)."""
        import numpy as np

        try:
            return np.load(io.BytesIO(self.read(name)), allow_pickle=False)
        except ValueError as exc:
            raise ArtifactError(f"side file {name!r} is not a readable .npy array: {exc}") from exc

    def names(self) -> list[str]:
        """The names of the stored files, sorted."""
        return sorted(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # ---- on disk ----

    def records(self, stem: str) -> list[dict[str, Any]]:
        """The artifact's ``files`` entries for an artifact whose file name stem is ``stem``."""
        return [
            {
                "name": name,
                "path": f"{stem}.{name}",
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
            for name, data in sorted(self._data.items())
        ]

    def write_to(self, directory: Path, stem: str) -> None:
        """Write every file next to the artifact."""
        for record in self.records(stem):
            atomic_write(directory / record["path"], self._data[record["name"]])

    @classmethod
    def read_from(
        cls, directory: Path | None, records: Iterable[Any], *, source: str, models: ModelPolicy | None = None
    ) -> SideFiles:
        """Read and verify the side files an artifact lists (see ``oobleck._files``).

        Raises:
            ArtifactError: a file is missing, outside the artifact's directory, a symlink or a
                special file, larger than declared, or changed.
        """
        contents: dict[str, bytes] = {}
        for record in records:
            if directory is None:
                raise ArtifactError(
                    f"{source} references side file {record.path!r}, but it was not loaded from a file; "
                    "load it with oobleck.load(path)"
                )
            if "/" in record.path or "\\" in record.path or record.path in (".", ".."):
                raise ArtifactError(f"{source}: side file path {record.path!r} must be a bare file name")
            if record.name in contents:
                raise ArtifactError(f"{source} lists side file {record.name!r} twice")
            if record.size > MAX_SIDE_BYTES:
                raise ArtifactError(f"{source}: side file {record.path!r} claims {record.size} bytes; too large")
            data = read_inside(
                directory,
                record.path,
                what=f"{source}: side file {record.path!r}",
                max_bytes=MAX_SIDE_BYTES,
                expected_size=record.size,
            )
            digest = hashlib.sha256(data).hexdigest()
            if digest != record.sha256:
                raise ArtifactError(
                    f"{source}: side file {record.path!r} does not match the artifact "
                    f"(expected sha256 {record.sha256[:12]}..., found {digest[:12]}...); it was changed or "
                    "belongs to another save"
                )
            contents[record.name] = data
        return cls(contents, models=models)
