"""VectorIndex: exact nearest-neighbour search in numpy over an Embedder's vectors.

Documents are embedded once, in batches, when the index is built (with a progress bar); a
search embeds the queries in one batch and scores them against every document with one
matrix product (cosine similarity: embedders return unit-length rows). Exact, no server, no
approximate structure: right for corpora up to a few hundred thousand passages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oobleck import _progress
from oobleck.errors import ConfigError
from oobleck.retrieve import _state
from oobleck.retrieve.passage import Documents, Passage, check_k, check_queries, top_k

if TYPE_CHECKING:
    import numpy as np

    from oobleck.artifact import SideFiles
    from oobleck.retrieve.embedders import Embedder

__all__ = ["VectorIndex"]


class VectorIndex:
    """Exact cosine-similarity search over embedded documents.

    Args:
        corpus: strings, or mappings with ``text`` and optional ``title`` and ``id``. A
            document is embedded as ``"title | text"``.
        embedder: an :class:`~oobleck.retrieve.embedders.Embedder`; default HashingEmbedder().
        batch_size: documents embedded per batch while building.
        show_progress: show a progress bar while embedding (needs tqdm).

    Raises:
        ConfigError: an empty or malformed corpus, or an embedder that returns the wrong shape.

    Example:
        >>> index = VectorIndex(["the cat sat on the mat", "stock prices fell"], show_progress=False)
        >>> [p.text for p in index.search(["a cat on a mat"], k=1)[0]]
        ['the cat sat on the mat']
    """

    kind = "vector"

    def __init__(
        self,
        corpus: Sequence[str | Mapping[str, Any]] | Documents,
        *,
        embedder: Embedder | None = None,
        batch_size: int = 256,
        show_progress: bool = True,
    ) -> None:
        import numpy as np

        from oobleck.retrieve.embedders import HashingEmbedder

        self.documents = Documents.from_corpus(corpus)
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        texts = self.documents.indexed_texts()
        parts = []
        with _progress.counter(len(texts), "embedding corpus", enabled=show_progress, unit="doc") as progress:
            for start in range(0, len(texts), max(1, batch_size)):
                batch = texts[start : start + max(1, batch_size)]
                parts.append(np.asarray(self.embedder.embed(batch), dtype=np.float32))
                if progress is not None:
                    progress.update(len(batch))
        self.vectors = _checked(np.concatenate(parts, axis=0), len(self.documents))

    @classmethod
    def from_vectors(cls, documents: Documents, vectors: np.ndarray, *, embedder: Embedder) -> VectorIndex:
        """An index over vectors computed elsewhere (one unit-length row per document).

        Raises:
            ConfigError: the rows do not match the documents.
        """
        index = cls.__new__(cls)
        index.documents = documents
        index.embedder = embedder
        index.vectors = _checked(vectors, len(documents))
        return index

    def __len__(self) -> int:
        return len(self.documents)

    def search(self, queries: Sequence[str], *, k: int) -> list[list[Passage]]:
        """For each query, the ``k`` most similar documents, best first (ties: corpus order).

        Raises:
            ConfigError: the embedder returned query vectors of the wrong shape, or NaN/inf.
        """
        import numpy as np

        qs = check_queries(queries)
        k = check_k(k)
        if not qs:
            return []
        q = np.asarray(self.embedder.embed(qs), dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.vectors.shape[1]:
            raise ConfigError(
                f"the embedder returned query vectors of shape {q.shape}, but the index holds "
                f"{self.vectors.shape[1]}-dimensional vectors; search with the embedder that built it"
            )
        bad = np.flatnonzero(~np.isfinite(q).all(axis=1))
        if len(bad):
            raise ConfigError(
                f"the embedder returned NaN or infinite values for the query {qs[int(bad[0])]!r:.80} "
                f"({len(bad)} of {len(qs)} queries); fix the embedder (a zero vector normalised by its length "
                "gives NaN) or leave such queries out"
            )
        out: list[list[Passage]] = []
        for start in range(0, len(qs), 256):  # bounded memory: 256 x corpus scores at a time
            idx, scores = top_k(q[start : start + 256] @ self.vectors.T, k)
            out.extend(
                [self.documents.passage(int(i), float(s)) for i, s in zip(ri, rs)] for ri, rs in zip(idx, scores)
            )
        return out

    def config(self) -> dict[str, Any]:
        """Type, embedder, size and corpus digest (never the corpus)."""
        return {
            "type": self.kind,
            "embedder": self.embedder.config(),
            "documents": len(self.documents),
            "dim": int(self.vectors.shape[1]),
        }

    # ---- saving (see oobleck.retrieve.store) ----

    def dump(self, files: SideFiles) -> dict[str, Any]:
        """The config plus side-file names for the corpus and the vectors."""
        return {
            **self.config(),
            "corpus": _state.write_documents(files, self.documents),
            "vectors": _state.write_array(files, "vectors", self.vectors),
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any], files: SideFiles, *, embedder: Embedder) -> VectorIndex:
        """Rebuild from :meth:`dump` (no embedding happens: the vectors are read back)."""
        return cls.from_vectors(
            _state.read_documents(files, state["corpus"]), files.read_array(state["vectors"]), embedder=embedder
        )

    def __repr__(self) -> str:
        return f"VectorIndex({len(self.documents)} documents, embedder={self.embedder!r})"


def _checked(vectors: Any, n: int) -> np.ndarray:
    import numpy as np

    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise ConfigError(f"expected one vector per document ({n} rows), got an array of shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ConfigError("the document vectors contain NaN or infinite values")
    return matrix
