"""A retriever's saved state in side files: the low half of saving, shared by every retriever.

A built-in retriever's ``dump(files)`` writes its corpus (canonical JSON) and arrays (``.npy``,
no pickles) as side files named by their content hash, with the helpers here, and returns JSON
state that names them. Rebuilding a retriever from that state (and choosing which classes a file
may rebuild) is :mod:`oobleck.retrieve.store`'s job, one level up.
"""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING, Any

from oobleck.errors import ConfigError
from oobleck.retrieve.passage import Documents, Retriever

if TYPE_CHECKING:
    from oobleck.artifact import SideFiles

__all__ = [
    "UnboundRetrieverError",
    "dump_retriever",
    "read_documents",
    "write_array",
    "write_bytes",
    "write_documents",
]


class UnboundRetrieverError(ConfigError):
    """A saved retriever that a file alone may not rebuild (external, or a Qdrant server)."""


def write_bytes(files: SideFiles, prefix: str, suffix: str, data: bytes) -> str:
    """Store ``data`` as ``<prefix>-<sha256[:16]><suffix>`` once (equal content shares a file)."""
    name = f"{prefix}-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if name not in files.names():
        files.write(name, data)
    return name


def write_array(files: SideFiles, prefix: str, array: Any) -> str:
    """Store a numpy array as ``.npy`` (no pickles), named by its content."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(np.asarray(array)), allow_pickle=False)
    return write_bytes(files, prefix, ".npy", buf.getvalue())


def write_documents(files: SideFiles, documents: Documents) -> str:
    """Store a corpus as a JSON side file; returns its name."""
    return write_bytes(files, "corpus", ".json", documents.to_bytes())


def read_documents(files: SideFiles, name: Any) -> Documents:
    """The corpus stored by :func:`write_documents`."""
    if not isinstance(name, str):
        raise ConfigError(f"a saved index names its corpus file by a string, got {name!r}")
    return Documents.from_bytes(files.read(name))


def dump_retriever(retriever: Retriever, files: SideFiles) -> dict[str, Any]:
    """JSON state for ``retriever``: a built-in one saves its index; any other only its config."""
    dump = getattr(retriever, "dump", None)
    if callable(dump):
        return dict(dump(files))
    return {
        "type": "external",
        "config": retriever.config(),
        "class": f"{type(retriever).__module__}.{type(retriever).__qualname__}",
    }
