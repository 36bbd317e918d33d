"""Saving retrievers: side files for the heavy parts, JSON for the configuration.

A built-in retriever's ``dump(files)`` writes its corpus (canonical JSON) and arrays (``.npy``,
no pickles) as side files named by their content hash (with :mod:`oobleck.retrieve._state`), and
returns JSON state that names them; :func:`restore_retriever` rebuilds it. An artifact records
each side file's size and sha256 and checks them on load, so the artifact itself holds the
configuration, never the corpus. :func:`save_index` / :func:`load_index` do the
same for an index on its own, in a folder (``index.json`` plus its side files).

Restoring never lets a file choose what runs: only built-in retriever types are rebuilt; an
embedder is rebuilt from a file only when it is one oobleck bundles (the hashing embedder, or
the packaged MiniLM with no model path). Anything else needs the caller to pass the embedder
(or the retriever) explicitly. A Qdrant retriever is never reconnected from a file: the file
may not choose a URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from oobleck._files import atomic_write, read_regular
from oobleck.errors import ArtifactError, ConfigError
from oobleck.retrieve._state import UnboundRetrieverError, dump_retriever
from oobleck.retrieve.bm25 import BM25Index
from oobleck.retrieve.embedders import embedder_from_config
from oobleck.retrieve.hybrid import HybridRetriever
from oobleck.retrieve.passage import Retriever
from oobleck.retrieve.vector import VectorIndex

if TYPE_CHECKING:
    from oobleck.artifact import SideFiles
    from oobleck.retrieve.embedders import Embedder

__all__ = [
    "UnboundRetrieverError",
    "load_index",
    "restore_retriever",
    "save_index",
    "saved_embedder",
]

INDEX_FORMAT = "oobleck.index"
INDEX_SCHEMA_VERSION = 1
MAX_HASHING_DIM = 1 << 20


def saved_embedder(config: Any, given: Embedder | None = None, files: SideFiles | None = None) -> Embedder:
    """The embedder for a saved index: ``given`` if passed, else one rebuilt from ``config``.

    Only embedders oobleck bundles are rebuilt from a file: ``HashingEmbedder`` and the packaged
    MiniLM (``TransformersEmbedder`` without a model path), plus a model folder the user allowed
    when loading an artifact (``oobleck.load(..., allow_models=[folder])``, checked by
    ``files``). A file naming any other model gets an UnboundRetrieverError asking the caller to
    pass the embedder, so a file never picks a model to load.

    Raises:
        ConfigError: a config that is not a bundled or allowed embedder, and no ``given``.
    """
    if given is not None:
        return given
    if not isinstance(config, Mapping):
        raise ConfigError(f"a saved embedder config must be a mapping, got {config!r:.100}")
    config = dict(config)
    kind = config.get("type")
    if kind == "transformers" and config.get("model_path") is not None and files is not None:
        try:
            config["model_path"] = files.allowed_model(config["model_path"], what="the retriever's embedder")
        except ArtifactError as exc:
            raise UnboundRetrieverError(
                f"{exc}; or pass the embedder yourself (load_index(path, embedder=...)) or set the Retrieve "
                "module's retriever after loading"
            ) from None
        return embedder_from_config(
            {k: v for k, v in config.items() if k in ("type", "batch_size", "max_length", "model_path")}
        )
    bundled = (kind == "hashing" and isinstance(config.get("dim"), int) and 0 < config["dim"] <= MAX_HASHING_DIM) or (
        kind == "transformers" and config.get("model_path") is None
    )
    if not bundled:
        raise UnboundRetrieverError(
            f"the saved index uses the embedder {dict(config)!r}, which is not one oobleck bundles; a file may not "
            "choose a model to load. Pass the embedder yourself (load_index(path, embedder=...)) or set the "
            "Retrieve module's retriever after loading"
        )
    options = {
        k: v for k, v in config.items() if k in ("type", "dim", "ngrams", "batch_size", "max_length", "model_path")
    }
    return embedder_from_config(options)


def restore_retriever(state: Any, files: SideFiles, *, embedder: Embedder | None = None) -> Retriever:
    """Rebuild a built-in retriever from :func:`dump_retriever`'s state.

    Raises:
        UnboundRetrieverError: the state is an external retriever or a Qdrant collection (the
            caller must provide it), or names an embedder that is not bundled.
        ConfigError: malformed state.
    """
    if not isinstance(state, Mapping):
        raise ConfigError(f"saved retriever state must be a mapping, got {type(state).__name__}")
    kind = state.get("type")
    try:
        if kind == VectorIndex.kind:
            return VectorIndex.restore(state, files, embedder=saved_embedder(state.get("embedder"), embedder, files))
        if kind == BM25Index.kind:
            return BM25Index.restore(state, files)
        if kind == HybridRetriever.kind:
            parts = state.get("retrievers")
            if not isinstance(parts, list):
                raise ConfigError("a saved hybrid retriever needs a 'retrievers' list")
            return HybridRetriever.restore(state, [restore_retriever(p, files, embedder=embedder) for p in parts])
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"saved {kind} retriever state is malformed: {type(exc).__name__}: {exc}") from None
    if kind == "qdrant":
        raise UnboundRetrieverError(
            f"the saved retriever is the Qdrant collection {state.get('collection')!r}; a file never chooses a server. "
            "Pass QdrantRetriever(collection, url=..., embedder=...) yourself"
        )
    if kind == "external":
        raise UnboundRetrieverError(
            f"the saved retriever is a {state.get('class', 'custom')} (not built in), whose index is not saved; "
            "provide it again"
        )
    raise ConfigError(f"unknown saved retriever type {kind!r}; built in: 'vector', 'bm25', 'hybrid', 'qdrant'")


# ---- an index on its own, in a folder ----


def save_index(retriever: Retriever, directory: str | Path) -> Path:
    """Save a built-in retriever's index to ``directory`` (``index.json`` and its side files).

    Returns:
        The path of ``index.json``.

    Raises:
        ConfigError: the retriever does not save an index (Qdrant, or a custom one).
    """
    from oobleck._version import __version__
    from oobleck.artifact import SideFiles

    files = SideFiles()
    state = dump_retriever(retriever, files)
    if state.get("type") in ("external", "qdrant"):
        raise ConfigError(f"{type(retriever).__name__} keeps its own storage; there is no index to save here")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    files.write_to(folder, "index")
    manifest = {
        "format": INDEX_FORMAT,
        "schema_version": INDEX_SCHEMA_VERSION,
        "oobleck_version": __version__,
        "retriever": state,
        "files": files.records("index"),
    }
    path = folder / "index.json"
    atomic_write(path, (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode("utf-8"))
    return path


def load_index(directory: str | Path, *, embedder: Embedder | None = None) -> Retriever:
    """Load an index saved by :func:`save_index` (every side file checked against its sha256).

    Args:
        directory: the folder (or its ``index.json``).
        embedder: the embedder for a vector index whose embedder oobleck does not bundle.

    Raises:
        ArtifactError: a missing, changed or malformed file.
        ConfigError: see :func:`restore_retriever`.
    """
    from oobleck.artifact import SideFiles

    path = Path(directory)
    if path.is_dir():
        path = path / "index.json"
    source = str(path)
    raw = read_regular(path, what="index", max_bytes=64 * 1024 * 1024)  # no FIFO, device or oversized file
    try:
        manifest = json.loads(raw)
    except RecursionError:
        raise ArtifactError(f"{source} nests JSON too deeply to be an index") from None
    except ValueError as exc:
        raise ArtifactError(f"{source} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
        raise ArtifactError(f"{source} is not an oobleck index (format {INDEX_FORMAT!r})")
    if manifest.get("schema_version") != INDEX_SCHEMA_VERSION:
        raise ArtifactError(
            f"{source} has schema_version {manifest.get('schema_version')!r}; this oobleck reads {INDEX_SCHEMA_VERSION}"
        )
    records = []
    for rec in manifest.get("files") or []:
        if not (
            isinstance(rec, dict)
            and all(isinstance(rec.get(k), str) for k in ("name", "path", "sha256"))
            and isinstance(rec.get("size"), int)
        ):
            raise ArtifactError(f"{source}: a malformed side-file record {rec!r:.120}")
        records.append(SimpleNamespace(**{k: rec[k] for k in ("name", "path", "sha256", "size")}))
    files = SideFiles.read_from(path.parent, records, source=source)
    try:
        return restore_retriever(manifest.get("retriever"), files, embedder=embedder)
    except UnboundRetrieverError:
        raise
    except ConfigError as exc:
        raise ArtifactError(f"{source}: {exc}") from None
