"""Retrieve: the program step that searches, visible in traces like a predictor call.

``Retrieve(retriever, k=3)(query="...")`` returns ``Prediction(passages=[Passage, ...])`` and
records one :class:`~oobleck.trace.TraceEntry` (inputs ``{"query"}``, outputs ``{"passages"}``,
no messages, no LM usage), so metrics and optimizers see what was retrieved at each step.

Dry runs never search by surprise: during ``render()``/``render_calls()`` and the budget
estimates built on them, Retrieve returns ``k`` placeholder passages (``[1] {title 1}`` /
``{passage 1 for: <query>}``) unless it was built with ``search_on_render=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from oobleck import callbacks
from oobleck.context import current
from oobleck.errors import ConfigError, InputError
from oobleck.example import Prediction
from oobleck.lm.types import Usage
from oobleck.module import RENDERING, Module
from oobleck.retrieve.passage import Passage, Retriever, check_k
from oobleck.trace import TraceEntry, emit
from oobleck.trace import active as recording_active

if TYPE_CHECKING:
    from oobleck.artifact import SideFiles

__all__ = ["Retrieve"]


class Retrieve(Module):
    """Search a retriever for the ``k`` best passages of a query.

    Args:
        retriever: any :class:`~oobleck.retrieve.Retriever` (VectorIndex, BM25Index,
            HybridRetriever, QdrantRetriever, yours); falls back to ``oobleck.context(retriever=...)``.
        k: passages per query.
        search_on_render: run the real search during dry runs (``render_calls``, estimates)
            instead of showing placeholders.

    Raises:
        ConfigError: a bad ``k`` or something that is not a Retriever.

    Example:
        >>> from oobleck.retrieve import VectorIndex
        >>> retrieve = Retrieve(VectorIndex(["Paris is in France.", "Rome is in Italy."], show_progress=False), k=1)
        >>> retrieve(query="France").passages[0].text
        'Paris is in France.'
    """

    def __init__(self, retriever: Retriever | None = None, *, k: int = 3, search_on_render: bool = False) -> None:
        if retriever is not None and not isinstance(retriever, Retriever):
            raise ConfigError(f"{retriever!r} is not a Retriever (it needs search(queries, k=...) and config())")
        self.retriever = retriever
        self.k = check_k(k)
        self.search_on_render = bool(search_on_render)
        self.unbound_reason: str | None = None

    def resolve_retriever(self) -> Retriever:
        """This step's retriever: its own, else the context's.

        Raises:
            ConfigError: neither is set (says why when a loaded artifact could not rebuild it).
        """
        retriever = self.retriever or current().retriever
        if retriever is None:
            why = f" ({self.unbound_reason})" if self.unbound_reason else ""
            raise ConfigError(
                f"no retriever for Retrieve(k={self.k}){why}: pass Retrieve(retriever, ...), set "
                "module.retriever = ..., or wrap the call in `with oobleck.context(retriever=...)`"
            )
        return retriever

    def forward(self, *, query: str, exclude: Collection[str] = ()) -> Prediction:  # type: ignore[override]  # Module.forward takes any **inputs
        """The ``k`` best passages for ``query`` as ``Prediction(passages=[...])``.

        ``exclude``: passage ids already found; the search skips them and still returns ``k``
        new passages when the retriever has them (multi-hop programs use it so that a hop never
        spends its ``k`` on what an earlier hop found).
        """
        if not isinstance(query, str):
            raise InputError(f"Retrieve takes one query string, got {type(query).__name__}; for many, use .batch()")
        if _rendering() and not self.search_on_render:
            passages = [
                Passage(id=f"placeholder-{i}: {query}", title=f"{{title {i}}}", text=f"{{passage {i} for: {query}}}")
                for i in range(1, self.k + 1)
            ]
            return Prediction(passages=passages)
        skip = {exclude} if isinstance(exclude, str) else set(exclude)  # one id, not its characters
        retriever = self.resolve_retriever()
        with callbacks.step("retrieval", type(retriever).__name__, retriever, {"query": query, "k": self.k}) as watched:
            found = retriever.search([query], k=self.k + len(skip))[0]
            passages = [p for p in found if p.id not in skip][: self.k]
            watched.done(passages)
        if recording_active():
            emit(TraceEntry(self, {"query": query}, {"passages": list(passages)}, [], None, Usage()))
        return Prediction(passages=list(passages))

    def batch(self, queries: list[str]) -> list[list[Passage]]:
        """The ``k`` best passages of each query, in one batched search (not traced)."""
        return self.resolve_retriever().search(queries, k=self.k)

    def named_predictors(self) -> list[tuple[str, Any]]:
        """A Retrieve step has no predictors (nothing for an optimizer to tune)."""
        return []

    # ---- saving (see oobleck.artifact and oobleck.retrieve.store) ----

    def dump_extra(self, files: SideFiles) -> dict[str, Any]:
        """``k`` and the retriever's saved state (its index goes to side files)."""
        from oobleck.retrieve._state import dump_retriever

        state: dict[str, Any] = {"k": self.k, "search_on_render": self.search_on_render}
        if self.retriever is not None:
            state["retriever"] = dump_retriever(self.retriever, files)
        return state

    def load_extra(self, extra: Mapping[str, Any], files: SideFiles) -> None:
        """Restore ``k`` and rebuild the retriever from side files when a file may do so.

        A Qdrant collection, a custom retriever or an embedder oobleck does not bundle is not
        rebuilt from a file: the step stays unbound (with a warning) until you set
        ``module.retriever`` or ``oobleck.context(retriever=...)``.
        """
        from oobleck.retrieve import store

        self.k = check_k(extra.get("k", 3))
        flag = extra.get("search_on_render", False)
        if not isinstance(flag, bool):
            raise ConfigError(f"Retrieve search_on_render must be true or false, got {flag!r}")
        self.search_on_render = flag
        self.retriever = None
        self.unbound_reason = None
        if extra.get("retriever") is None:
            return
        try:
            self.retriever = store.restore_retriever(extra["retriever"], files)
        except store.UnboundRetrieverError as exc:
            self.unbound_reason = str(exc)
            warnings.warn(f"Retrieve step left without a retriever: {exc}", stacklevel=2)

    def __repr__(self) -> str:
        return f"Retrieve(k={self.k}, retriever={self.retriever!r})"


def _rendering() -> bool:
    return RENDERING.get() is not None
