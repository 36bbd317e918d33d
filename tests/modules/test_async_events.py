"""Every module gives callbacks the same tree of events from ``acall`` as from a sync call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from react_helpers import act, finish, search

from oobleck import (
    RAG,
    BestOfN,
    ChainOfThought,
    Ensemble,
    Example,
    FakeLM,
    KNNFewShot,
    Module,
    MultiHop,
    ReAct,
    Refine,
    context,
)
from oobleck.callbacks import Callback, Event
from oobleck.retrieve import BM25Index

PASSAGES = ["Paris is the capital of France.", "The Eiffel Tower is in Paris.", "Rome is in Italy."]


class Tree(Callback):
    """Records every end event's kind, name and parent, to rebuild the call tree without ids."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []

    def on_end(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def shape(self) -> list[Any]:
        children: dict[str | None, list[Event]] = {}
        for event in sorted(self.events, key=lambda e: e.started):
            children.setdefault(event.parent_id, []).append(event)

        def build(parent: str | None) -> list[Any]:
            return [(e.kind, e.name, build(e.id)) for e in children.get(parent, [])]

        return build(None)


def _answers() -> list[dict[str, Any]]:
    return [{"reasoning": "r", "answer": "Paris", "query": "capital"}]


def _cot() -> Module:
    return ChainOfThought("question -> answer", lm=FakeLM(_answers(), cycle=True))


def _react() -> Module:
    lm = FakeLM([act("search", query="paris"), finish(), {"answer": "Paris"}])
    return ReAct("question -> answer", tools=[search], lm=lm)


def _rag() -> Module:
    return RAG(BM25Index(PASSAGES), k=1, lm=FakeLM(_answers(), cycle=True))


def _rag_cot() -> Module:
    return RAG(BM25Index(PASSAGES), k=1, reasoning=True, lm=FakeLM(_answers(), cycle=True))


def _multihop() -> Module:
    return MultiHop(BM25Index(PASSAGES), hops=2, k=1, reasoning=True, lm=FakeLM(_answers(), cycle=True))


def _best_of_n() -> Module:
    return BestOfN(_cot(), 2, lambda inputs, pred: 0.0, threshold=1.0)


def _refine() -> Module:
    return Refine(_rag(), 2, lambda inputs, pred: (0.0, "shorter"), threshold=1.0)


def _ensemble() -> Module:
    return Ensemble([_cot(), _react()])


def _knn() -> Module:
    rows = [Example(question=q, answer="a").with_inputs("question") for q in ("one", "two", "three")]
    return KNNFewShot(_cot(), trainset=rows, k=2)


PROGRAMS: dict[str, Callable[[], Module]] = {
    "ChainOfThought": _cot,
    "ReAct": _react,
    "RAG": _rag,
    "RAG(reasoning)": _rag_cot,
    "MultiHop": _multihop,
    "BestOfN": _best_of_n,
    "Refine": _refine,
    "Ensemble": _ensemble,
    "KNNFewShot": _knn,
}


def _sync_tree(make: Callable[[], Module]) -> list[Any]:
    seen = Tree()
    with context(callbacks=[seen]):
        make()(question="What is the capital of France?")
    return seen.shape()


def _async_tree(make: Callable[[], Module]) -> list[Any]:
    seen = Tree()

    async def run() -> None:
        with context(callbacks=[seen]):
            await make().acall(question="What is the capital of France?")

    asyncio.run(run())
    return seen.shape()


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_an_async_run_reports_the_same_event_tree_as_a_sync_run(name: str) -> None:
    sync = _sync_tree(PROGRAMS[name])
    # the inner predictors are module events of their own, under the program's
    assert [kind for kind, _ in _flatten(sync)].count("module") >= 2, sync
    assert _async_tree(PROGRAMS[name]) == sync


def _flatten(tree: list[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for kind, name, children in tree:
        out.append((kind, name))
        out.extend(_flatten(children))
    return out
