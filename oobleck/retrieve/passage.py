"""Passages and the Retriever protocol: queries and ``k`` in, ranked passages out.

A :class:`Passage` is what every retriever returns (id, title, text, score). A corpus given to
an index is a sequence of strings or of mappings with ``text`` and optional ``title`` and
``id``; :class:`Documents` holds it as three parallel lists. A list of passages in a prompt
renders as numbered passages with their titles (:func:`format_passages`), never as one JSON line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pydantic

from oobleck.adapters._values import format_blocks
from oobleck.errors import ConfigError, InputError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Documents", "Passage", "Retriever", "as_passages", "format_passages"]

_PASSAGE_KEYS = frozenset({"id", "title", "text", "score"})


class Passage(pydantic.BaseModel):
    """One retrieved passage.

    Attributes:
        id: the document's id in its corpus (unique there).
        title: its title ("" when the corpus has none).
        text: its text.
        score: the retriever's score (higher is better; scales differ between retrievers).
    """

    model_config = pydantic.ConfigDict(frozen=True)

    id: str
    title: str = ""
    text: str
    score: float = 0.0

    def prompt_block(self) -> tuple[str, str]:
        """``(title, text)``: how the passage reads in a prompt.

        A numbered block, see :class:`oobleck.adapters.PromptBlock`.
        """
        return self.title, self.text


@runtime_checkable
class Retriever(Protocol):
    """What :class:`~oobleck.retrieve.Retrieve` needs: batched search and a JSON description."""

    def search(self, queries: Sequence[str], *, k: int) -> list[list[Passage]]:
        """For each query, up to ``k`` passages, best first."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON data describing the retriever (type and settings, never the corpus)."""
        ...


@dataclass(frozen=True, slots=True)
class Documents:
    """A corpus as parallel lists of ids, titles and texts.

    Example:
        >>> docs = Documents.from_corpus(["plain text", {"title": "Paris", "text": "Capital of France."}])
        >>> docs.ids, docs.titles
        (['0', '1'], ['', 'Paris'])
    """

    ids: list[str]
    titles: list[str]
    texts: list[str]

    @classmethod
    def from_corpus(cls, corpus: Sequence[str | Mapping[str, Any]] | Documents) -> Documents:
        """Read strings or ``{"text", "title"?, "id"?}`` mappings (ids default to the row number).

        Raises:
            ConfigError: an empty corpus, a row without text, or a repeated id.
        """
        if isinstance(corpus, Documents):
            return corpus
        if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Sequence):
            raise ConfigError(
                f"a corpus is a list of strings or of {{'title', 'text'}} mappings, got {type(corpus).__name__}"
            )
        if not corpus:
            raise ConfigError("the corpus is empty; an index needs at least one document")
        ids, titles, texts = [], [], []
        for i, row in enumerate(corpus):
            if isinstance(row, str):
                ids.append(str(i))
                titles.append("")
                texts.append(row)
                continue
            if not isinstance(row, Mapping) or not isinstance(row.get("text"), str):
                raise ConfigError(f"corpus[{i}] must be a string or a mapping with a 'text' string, got {row!r:.120}")
            ids.append(str(row.get("id", i)))
            titles.append(str(row.get("title") or ""))
            texts.append(row["text"])
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            for dup in ids:
                if dup in seen:
                    raise ConfigError(f"corpus ids must be unique; {dup!r} appears more than once")
                seen.add(dup)
        return cls(ids, titles, texts)

    def __len__(self) -> int:
        return len(self.ids)

    def passage(self, index: int, score: float) -> Passage:
        """Row ``index`` as a Passage with ``score``."""
        return Passage(id=self.ids[index], title=self.titles[index], text=self.texts[index], score=score)

    def indexed_texts(self) -> list[str]:
        """What indexes see of each document: its title, then its text."""
        return [f"{t} | {x}" if t else x for t, x in zip(self.titles, self.texts)]

    def to_bytes(self) -> bytes:
        """Canonical JSON (saved as a side file, so an artifact never holds a corpus inline)."""
        data = {"ids": self.ids, "titles": self.titles, "texts": self.texts}
        return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Documents:
        """Rebuild from :meth:`to_bytes` (checks the shape of untrusted data).

        Raises:
            ConfigError: not the JSON :meth:`to_bytes` writes.
        """
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"the corpus file is not JSON: {exc}") from None
        lists = [obj.get(key) if isinstance(obj, dict) else None for key in ("ids", "titles", "texts")]
        if not all(isinstance(x, list) and all(isinstance(s, str) for s in x) for x in lists):
            raise ConfigError("the corpus file must hold 'ids', 'titles' and 'texts' lists of strings")
        ids, titles, texts = lists
        assert ids is not None and titles is not None and texts is not None
        if not (len(ids) == len(titles) == len(texts)) or len(set(ids)) != len(ids):
            raise ConfigError("the corpus file's lists differ in length or repeat an id")
        return cls(ids, titles, texts)

    def digest(self) -> str:
        """sha256 of :meth:`to_bytes` (names side files, identifies the corpus in configs)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` (queries x documents), the ``k`` best columns and their scores.

    Ties go to the lower column, so results never depend on the sort's internals.
    """
    import numpy as np

    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64), np.zeros((scores.shape[0], 0), dtype=scores.dtype)
    if k < n:
        # argpartition finds a candidate set; widen it to every column tied with the k-th score.
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    else:
        kth = scores.min(axis=1, keepdims=True)
    rows_idx, rows_scores = [], []
    for row, threshold in zip(scores, kth[:, 0]):
        cand = np.flatnonzero(row >= threshold)
        order = np.lexsort((cand, -row[cand]))[:k]
        rows_idx.append(cand[order])
        rows_scores.append(row[cand[order]])
    return np.stack(rows_idx), np.stack(rows_scores)


def as_passages(value: Any) -> list[Passage] | None:
    """``value`` as passages when it is a non-empty list of Passages or passage-shaped mappings.

    Mappings count when their keys are among id/title/text/score and include a ``text``
    string: that is how passages come back from a saved artifact's demos.
    """
    if not isinstance(value, (list, tuple)) or not value:
        return None
    out = []
    for item in value:
        if isinstance(item, Passage):
            out.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str) and set(item) <= _PASSAGE_KEYS:
            try:
                out.append(Passage(**{"id": "", **item}))
            except pydantic.ValidationError:
                return None
        else:
            return None
    return out


def format_passages(passages: Sequence[Passage]) -> str:
    """Numbered passages with their titles, one block each (how prompts show them).

    Example:
        >>> print(format_passages([Passage(id="1", title="Paris", text="Capital of France.")]))
        [1] Paris
        Capital of France.
    """
    return format_blocks(passages)


def check_queries(queries: Any) -> list[str]:
    """``queries`` as a list of strings (a lone string is one query).

    Raises:
        InputError: anything else.
    """
    if isinstance(queries, str):
        return [queries]
    if isinstance(queries, Sequence) and all(isinstance(q, str) for q in queries):
        return list(queries)
    raise InputError(f"queries must be a string or a list of strings, got {queries!r:.120}")


def check_k(k: Any) -> int:
    """``k`` as a positive int.

    Raises:
        ConfigError: not an int >= 1.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be an int >= 1, got {k!r}")
    return k
