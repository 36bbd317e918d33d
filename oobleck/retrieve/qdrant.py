"""QdrantRetriever: vector search in a Qdrant collection (``pip install 'oobleck[qdrant]'``).

The same class talks to Qdrant's in-process local mode (``location=":memory:"`` or
``path="folder"``; no server) or to a server or cluster (``url="http://host:6333"``).
``qdrant-client`` is imported only when a retriever is created. Queries are embedded with the
same Embedder that embedded the documents, in one batch, and sent as one batched request.

Saving a program that holds a QdrantRetriever records the collection name and embedder only:
a file never chooses a server, so after loading, pass the retriever again (see
:class:`~oobleck.retrieve.Retrieve`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oobleck import _progress
from oobleck.errors import ConfigError, RetrievalError
from oobleck.retrieve.passage import Documents, Passage, check_k, check_queries

if TYPE_CHECKING:
    from oobleck.retrieve.embedders import Embedder

__all__ = ["QdrantRetriever"]


def _qdrant() -> Any:
    try:
        import qdrant_client
    except ImportError as exc:
        raise ConfigError("QdrantRetriever needs qdrant-client: pip install 'oobleck[qdrant]'") from exc
    return qdrant_client


class QdrantRetriever:
    """Search a Qdrant collection whose points carry ``id``, ``title`` and ``text`` payloads.

    Args:
        collection: the collection name.
        embedder: embeds queries (and documents in :meth:`add`); default HashingEmbedder().
        url: a Qdrant server, e.g. ``"http://localhost:6333"``.
        path: a folder for Qdrant's local on-disk mode.
        location: ``":memory:"`` for the in-process local mode (the default when neither
            ``url`` nor ``path`` nor ``client`` is given).
        client: an existing ``QdrantClient`` (its connection settings are yours).
        **client_options: passed to ``QdrantClient`` (``api_key``, ``timeout``...); never saved.

    Raises:
        ConfigError: qdrant-client is missing, or conflicting connection arguments.

    Example:
        >>> q = QdrantRetriever("docs")
        >>> q.add(["the cat sat on the mat", "stock prices fell"], show_progress=False)
        >>> q.search(["a cat on a mat"], k=1)[0][0].text
        'the cat sat on the mat'
    """

    kind = "qdrant"

    def __init__(
        self,
        collection: str,
        *,
        embedder: Embedder | None = None,
        url: str | None = None,
        path: str | None = None,
        location: str | None = None,
        client: Any = None,
        **client_options: Any,
    ) -> None:
        from oobleck.retrieve.embedders import HashingEmbedder

        if not isinstance(collection, str) or not collection:
            raise ConfigError(f"collection must be a non-empty string, got {collection!r}")
        if sum(x is not None for x in (url, path, location, client)) > 1:
            raise ConfigError("pass at most one of url=, path=, location= and client=")
        self.collection = collection
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        if client is None:
            qdrant_client = _qdrant()
            if url is not None:
                client = qdrant_client.QdrantClient(url=url, **client_options)
            elif path is not None:
                client = qdrant_client.QdrantClient(path=path, **client_options)
            else:
                client = qdrant_client.QdrantClient(location=location or ":memory:", **client_options)
        self.client = client

    @classmethod
    def from_corpus(
        cls,
        corpus: Sequence[str | Mapping[str, Any]] | Documents,
        collection: str,
        *,
        embedder: Embedder | None = None,
        batch_size: int = 256,
        show_progress: bool = True,
        vectors: Any = None,
        **connection: Any,
    ) -> QdrantRetriever:
        """Create the collection (replacing one of that name) and upload ``corpus`` to it.

        ``vectors`` (one row per document, from ``embedder``) skips embedding; see :meth:`add`.
        """
        retriever = cls(collection, embedder=embedder, **connection)
        retriever.add(corpus, batch_size=batch_size, show_progress=show_progress, recreate=True, vectors=vectors)
        return retriever

    def add(
        self,
        corpus: Sequence[str | Mapping[str, Any]] | Documents,
        *,
        batch_size: int = 256,
        show_progress: bool = True,
        recreate: bool = False,
        vectors: Any = None,
    ) -> None:
        """Embed ``corpus`` and upload it, creating the collection (cosine distance) when missing.

        Point ids are the documents' positions; the corpus ids go in the ``id`` payload.

        Args:
            corpus: the documents: strings, or mappings with ``text`` (and ``id``, ``title``).
            batch_size: documents embedded and uploaded at a time.
            show_progress: draw a progress bar.
            recreate: drop the collection first, if it exists.
            vectors: the documents' vectors, already computed by this retriever's embedder
                (e.g. ``VectorIndex.vectors``); default: embed them here.

        Raises:
            ConfigError: ``vectors`` that are not one row per document.
        """
        import numpy as np
        from qdrant_client import models

        docs = Documents.from_corpus(corpus)
        texts = docs.indexed_texts()
        given = None if vectors is None else np.asarray(vectors, dtype=np.float32)
        if given is not None and (given.ndim != 2 or given.shape[0] != len(docs)):
            raise ConfigError(f"vectors must have one row per document ({len(docs)}), got shape {given.shape}")
        batch_size = max(1, batch_size)
        desc = f"uploading to qdrant:{self.collection}"
        with _progress.counter(len(texts), desc, enabled=show_progress, unit="doc") as progress:
            for start in range(0, len(texts), batch_size):
                if given is not None:
                    vectors = given[start : start + batch_size]
                else:
                    vectors = np.asarray(self.embedder.embed(texts[start : start + batch_size]), dtype=np.float32)
                if start == 0:
                    self._ensure_collection(int(vectors.shape[1]), recreate=recreate)
                points = [
                    models.PointStruct(
                        id=start + j,
                        vector=vector.tolist(),
                        payload={
                            "id": docs.ids[start + j],
                            "title": docs.titles[start + j],
                            "text": docs.texts[start + j],
                        },
                    )
                    for j, vector in enumerate(vectors)
                ]
                self._call(self.client.upsert, collection_name=self.collection, points=points, wait=True)
                if progress is not None:
                    progress.update(len(points))

    def _ensure_collection(self, dim: int, *, recreate: bool) -> None:
        from qdrant_client import models

        exists = self._call(self.client.collection_exists, self.collection)
        if exists and recreate:
            self._call(self.client.delete_collection, self.collection)
        if not exists or recreate:
            self._call(
                self.client.create_collection,
                self.collection,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise RetrievalError(f"Qdrant ({self.collection!r}) is unreachable: {exc}") from exc
        except Exception as exc:  # qdrant-client raises its own types (UnexpectedResponse, RpcError...)
            if type(exc).__module__.startswith(("qdrant_client", "httpx", "grpc")):
                raise RetrievalError(
                    f"Qdrant ({self.collection!r}) refused the request: {type(exc).__name__}: {exc}"
                ) from exc
            raise

    def search(self, queries: Sequence[str], *, k: int) -> list[list[Passage]]:
        """For each query, the ``k`` nearest points (cosine), best first, in one batched request."""
        import numpy as np
        from qdrant_client import models

        qs = check_queries(queries)
        k = check_k(k)
        if not qs:
            return []
        vectors = np.asarray(self.embedder.embed(qs), dtype=np.float32)
        requests = [models.QueryRequest(query=v.tolist(), limit=k, with_payload=True) for v in vectors]
        responses = self._call(self.client.query_batch_points, collection_name=self.collection, requests=requests)
        out = []
        for response in responses:
            found = []
            for point in response.points:
                payload = point.payload or {}
                found.append(
                    Passage(
                        id=str(payload.get("id", point.id)),
                        title=str(payload.get("title") or ""),
                        text=str(payload.get("text") or ""),
                        score=float(point.score),
                    )
                )
            # Qdrant orders by score; ties go to the lower point id, as the numpy index does.
            found.sort(key=lambda p: -p.score)
            out.append(found)
        return out

    def config(self) -> dict[str, Any]:
        """Type, collection and embedder (never the URL or keys)."""
        return {"type": self.kind, "collection": self.collection, "embedder": self.embedder.config()}

    def dump(self, files: Any) -> dict[str, Any]:
        """Only :meth:`config`: the data lives in Qdrant, and a file never chooses a server."""
        return self.config()

    def __repr__(self) -> str:
        return f"QdrantRetriever({self.collection!r}, embedder={self.embedder!r})"
