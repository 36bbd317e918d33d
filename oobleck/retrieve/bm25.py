"""BM25Index: lexical search through the ``bm25s`` library (``pip install 'oobleck[bm25]'``).

oobleck does not implement BM25: it tokenizes with bm25s (lowercase words, English stopwords
removed by default), lets bm25s build its sparse score matrix, and asks it for each query's
scores. Only documents sharing at least one term with the query are returned (a BM25 score of
0 says nothing), best first, ties in corpus order. bm25s is imported when an index is built
or restored, never by ``import oobleck``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from oobleck.errors import ConfigError
from oobleck.retrieve import _state
from oobleck.retrieve.passage import Documents, Passage, check_k, check_queries, top_k

if TYPE_CHECKING:
    from oobleck.artifact import SideFiles

__all__ = ["BM25Index"]

_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:
        raise ConfigError("BM25Index needs the bm25s library: pip install 'oobleck[bm25]'") from exc
    return bm25s


class BM25Index:
    """BM25 ranking of a corpus, computed by ``bm25s``.

    Args:
        corpus: strings, or mappings with ``text`` and optional ``title`` and ``id``; the title
            is indexed with the text.
        k1, b, delta, method: BM25 parameters, passed to ``bm25s.BM25`` (method: "lucene",
            "robertson", "atire", "bm25l" or "bm25+").
        stopwords: a language code bm25s knows (e.g. "en"), or None to keep every word.
        show_progress: show bm25s's progress bars while indexing.

    Raises:
        ConfigError: bm25s is missing, an unknown method, or a malformed corpus.

    Example:
        >>> index = BM25Index(["the cat sat on the mat", "stock prices fell"], show_progress=False)
        >>> [p.text for p in index.search(["cat"], k=2)[0]]
        ['the cat sat on the mat']
    """

    kind = "bm25"

    def __init__(
        self,
        corpus: Sequence[str | Mapping[str, Any]] | Documents,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        delta: float = 0.5,
        method: str = "lucene",
        stopwords: str | None = "en",
        show_progress: bool = True,
    ) -> None:
        if method not in _METHODS:
            raise ConfigError(f"unknown BM25 method {method!r}; choose one of {list(_METHODS)}")
        bm25s = _bm25s()
        self.documents = Documents.from_corpus(corpus)
        self.params = {"k1": float(k1), "b": float(b), "delta": float(delta), "method": method}
        self.stopwords = stopwords
        tokens = bm25s.tokenize(
            self.documents.indexed_texts(), return_ids=False, stopwords=stopwords, show_progress=show_progress
        )
        if not any(tokens):
            raise ConfigError(
                f"BM25Index: no document has a word to index (every token is a stopword or too short; stopwords={stopwords!r})"
            )
        # The vocabulary is numbered in sorted order: bm25s numbers it in set order, which
        # follows Python's per-process string hashing, so the saved index would differ between
        # two processes that built it from the same corpus.
        vocab = {token: i for i, token in enumerate(sorted({t for doc in tokens for t in doc}))}
        ids = [[vocab[t] for t in doc] for doc in tokens]
        self._bm25 = bm25s.BM25(**self.params)
        self._bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=show_progress)

    def __len__(self) -> int:
        return len(self.documents)

    def search(self, queries: Sequence[str], *, k: int) -> list[list[Passage]]:
        """For each query, up to ``k`` documents sharing a term with it, best first."""
        import numpy as np

        qs = check_queries(queries)
        k = check_k(k)
        if not qs:
            return []
        tokens = _bm25s().tokenize(qs, return_ids=False, stopwords=self.stopwords, show_progress=False)
        n = len(self.documents)
        out: list[list[Passage]] = []
        for query_tokens in tokens:
            known = [t for t in query_tokens if t and t in self._bm25.vocab_dict]
            if not known:
                out.append([])
                continue
            scores = np.asarray(self._bm25.get_scores(known), dtype=np.float32).reshape(1, n)
            idx, vals = top_k(scores, k)
            out.append([self.documents.passage(int(i), float(s)) for i, s in zip(idx[0], vals[0]) if s > 0])
        return out

    def config(self) -> dict[str, Any]:
        """Type, BM25 parameters, stopwords and size (never the corpus)."""
        return {"type": self.kind, **self.params, "stopwords": self.stopwords, "documents": len(self.documents)}

    # ---- saving (see oobleck.retrieve.store) ----

    def dump(self, files: SideFiles) -> dict[str, Any]:
        """The config plus side files: corpus, bm25s's score matrix (CSC arrays) and vocabulary."""
        scores = self._bm25.scores
        vocab = json.dumps(self._bm25.vocab_dict, ensure_ascii=False, sort_keys=True).encode("utf-8")
        state = {
            **self.config(),
            "corpus": _state.write_documents(files, self.documents),
            "data": _state.write_array(files, "bm25-data", scores["data"]),
            "indices": _state.write_array(files, "bm25-indices", scores["indices"]),
            "indptr": _state.write_array(files, "bm25-indptr", scores["indptr"]),
            "vocab": _state.write_bytes(files, "bm25-vocab", ".json", vocab),
        }
        if getattr(self._bm25, "nonoccurrence_array", None) is not None:
            state["nonoccurrence"] = _state.write_array(files, "bm25-nonocc", self._bm25.nonoccurrence_array)
        return state

    @classmethod
    def restore(cls, state: Mapping[str, Any], files: SideFiles) -> BM25Index:
        """Rebuild from :meth:`dump` without re-indexing (the arrays are read back).

        Raises:
            ConfigError: bm25s is missing, or the saved arrays do not fit together.
        """
        import numpy as np

        bm25s = _bm25s()
        method = state.get("method")
        if method not in _METHODS:
            raise ConfigError(f"unknown BM25 method {method!r} in the saved index")
        index = cls.__new__(cls)
        index.documents = _state.read_documents(files, state["corpus"])
        index.params = {
            "k1": float(state["k1"]),
            "b": float(state["b"]),
            "delta": float(state["delta"]),
            "method": method,
        }
        stopwords = state.get("stopwords")
        if stopwords is not None and not isinstance(stopwords, str):
            raise ConfigError(f"stopwords must be a language code or null, got {stopwords!r}")
        index.stopwords = stopwords
        vocab = json.loads(files.read(state["vocab"]).decode("utf-8"))
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise ConfigError("the saved BM25 vocabulary is not a mapping of tokens to ints")
        data, indices, indptr = (files.read_array(state[key]) for key in ("data", "indices", "indptr"))
        n = len(index.documents)
        # bm25s adds the empty token to the vocabulary after building the matrix, so the
        # matrix may have one column fewer than the vocabulary has entries.
        if (
            indptr.ndim != 1
            or not (len(vocab) <= len(indptr) <= len(vocab) + 1)
            or len(data) != len(indices)
            or int(indptr[-1]) != len(data)
        ):
            raise ConfigError("the saved BM25 arrays do not fit the vocabulary")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n):
            raise ConfigError("the saved BM25 arrays point outside the corpus")
        if len(vocab) and (min(vocab.values()) < 0 or max(vocab.values()) > len(indptr) - 1):
            raise ConfigError("the saved BM25 vocabulary points outside its arrays")
        bm25 = bm25s.BM25(**index.params)
        bm25.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n}
        bm25.vocab_dict = vocab
        bm25.unique_token_ids_set = set(vocab.values())
        bm25.nonoccurrence_array = files.read_array(state["nonoccurrence"]) if "nonoccurrence" in state else None
        if method in ("bm25l", "bm25+") and bm25.nonoccurrence_array is None:
            raise ConfigError(f"a saved {method} index needs its non-occurrence array")
        index._bm25 = bm25
        assert isinstance(data, np.ndarray)
        return index

    def __repr__(self) -> str:
        return f"BM25Index({len(self.documents)} documents, method={self.params['method']!r})"
