"""Callbacks see every step as a start and an end, in a tree, and never break the program."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

import pytest

from oobleck import Callback, ConfigError, Event, Example, FakeLM, LMResponseError, Module, Predict, context
from oobleck import callbacks as cb
from oobleck.metrics import exact_match
from oobleck.optimize import RandomSearch
from oobleck.retrieve import Passage, Retrieve
from oobleck.tool import Tool


class Collect(Callback):
    """Keeps every event (thread-safe: compiles score rows in threads)."""

    def __init__(self) -> None:
        self.starts: list[Event] = []
        self.ends: list[Event] = []
        self._lock = threading.Lock()

    def on_start(self, event: Event) -> None:
        with self._lock:
            self.starts.append(event)
        super().on_start(event)  # the per-kind methods still run

    def on_end(self, event: Event) -> None:
        with self._lock:
            self.ends.append(event)
        super().on_end(event)


def rows() -> list[Example]:
    return [Example(q=f"q{i}", a="x" if i % 2 else "y").with_inputs("q") for i in range(10)]


def answers(request) -> dict[str, str]:  # right on odd rows only
    return {"a": "x"}


def test_a_callback_sees_every_event_of_a_compile_as_a_tree() -> None:
    seen = Collect()
    lm = FakeLM(answers)
    data = rows()
    with context(callbacks=[seen]):
        RandomSearch(exact_match, num_candidates=2, max_bootstrapped_demos=1, num_threads=2).compile(
            Predict("q -> a", lm=lm), trainset=data[:4], valset=data[4:], progress=False
        )
    starts = Counter(e.kind for e in seen.starts)
    ends = Counter(e.kind for e in seen.ends)
    assert starts == ends
    # one LM event per request the FakeLM answered, and one format/parse per generating call
    assert starts["lm"] == len(lm.requests) > 0
    assert starts["format"] == starts["parse"] == starts["lm"]
    assert starts["optimizer"] == 1 and starts["candidate"] >= 3 and starts["trial"] >= len(data[4:])
    by_id = {e.id: e for e in seen.starts}
    assert len(by_id) == len(seen.starts)  # ids are unique
    assert {e.id for e in seen.ends} == set(by_id)  # every start ended
    for event in seen.starts:  # the tree: every parent is an event of the same compile
        assert event.parent_id is None or event.parent_id in by_id
    roots = [e for e in seen.starts if e.parent_id is None]
    assert [e.kind for e in roots] == ["optimizer"]

    def chain(event: Event) -> list[str]:
        kinds = []
        while event.parent_id is not None:
            event = by_id[event.parent_id]
            kinds.append(event.kind)
        return kinds

    valset_calls = [e for e in seen.starts if e.kind == "lm" and "candidate" in chain(e)]
    assert valset_calls, "candidates' rows are scored through LM calls"
    assert chain(valset_calls[0]) == ["module", "trial", "candidate", "optimizer"]
    lm_ends = [e for e in seen.ends if e.kind == "lm"]
    assert all(e.outputs is not None and e.error is None and e.duration_s is not None for e in lm_ends)
    assert sum(e.outputs.usage.calls for e in lm_ends) == len(lm.requests)


class Box(Module):
    def __init__(self) -> None:
        self.answer = Predict("q -> a")

    def forward(self, q: str):
        return self.answer(q=q)


def test_events_of_a_program_nest_and_carry_outputs() -> None:
    seen = Collect()
    with context(lm=FakeLM([{"a": "4"}]), callbacks=[seen]):
        out = Box()(q="2+2?")
    assert [(e.kind, e.name) for e in seen.starts] == [
        ("module", "Box"),
        ("module", "Predict"),
        ("format", "chat"),
        ("lm", "fake"),
        ("parse", "chat"),
    ]
    box, predict, fmt, call, parse = seen.starts
    assert box.parent_id is None and predict.parent_id == box.id
    assert fmt.parent_id == call.parent_id == parse.parent_id == predict.id
    assert box.inputs == {"q": "2+2?"} and call.inputs["request"].messages[-1].role == "user"
    ends = {e.id: e for e in seen.ends}
    assert ends[box.id].outputs is out and ends[box.id].outputs.usage.calls == 1
    assert ends[parse.id].outputs == {"a": "4"}
    assert ends[fmt.id].outputs == list(call.inputs["request"].messages)


def test_a_failing_step_ends_with_its_error() -> None:
    seen = Collect()
    with context(callbacks=[seen]), pytest.raises(LMResponseError):
        Predict("q -> a", lm=FakeLM([]))(q="x")
    ends = {e.kind: e for e in seen.ends}
    assert isinstance(ends["lm"].error, LMResponseError) and ends["lm"].outputs is None
    assert ends["module"].error is ends["lm"].error


class Broken(Callback):
    def on_start(self, event: Event) -> None:
        raise RuntimeError("callback bug")

    def on_lm_end(self, event: Event) -> None:
        raise ValueError("another")


def test_a_callback_that_raises_is_logged_and_the_program_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    after = Collect()
    with caplog.at_level(logging.WARNING, "oobleck.callbacks"), context(callbacks=[Broken(), after]):
        out = Predict("q -> a", lm=FakeLM([{"a": "4"}]))(q="2+2?")
    assert out.a == "4"
    assert len(after.ends) == 4  # the callback after the broken one still saw everything
    messages = [r.getMessage() for r in caplog.records]
    assert sum("on_start" in m for m in messages) == 4 and sum("on_end(lm" in m for m in messages) == 1
    assert any("callback bug" in (r.exc_text or "") for r in caplog.records)


def test_registered_for_the_process_until_removed() -> None:
    seen = Collect()
    cb.add(seen)
    try:
        cb.add(seen)  # twice is once
        assert cb.registered().count(seen) == 1
        Predict("q -> a", lm=FakeLM([{"a": "4"}]))(q="x")
        worker = threading.Thread(target=lambda: Predict("q -> a", lm=FakeLM([{"a": "5"}]))(q="y"))
        worker.start()
        worker.join()
    finally:
        cb.remove(seen)
    assert Counter(e.kind for e in seen.ends)["lm"] == 2  # a thread without the context sees it too
    Predict("q -> a", lm=FakeLM([{"a": "4"}]))(q="x")
    assert len(seen.ends) == 8


def test_context_callbacks_apply_inside_the_block_only_and_are_checked() -> None:
    seen = Collect()
    with context(callbacks=[seen]):
        pass
    Predict("q -> a", lm=FakeLM([{"a": "4"}]))(q="x")
    assert seen.ends == []
    with pytest.raises(ConfigError, match="on_start"):
        with context(callbacks=[object()]):
            pass
    with pytest.raises(ConfigError, match="on_start"):
        cb.add(print)  # type: ignore[arg-type]
    assert cb.step("lm", None, None, {}) is cb.step("module", None, None, {})  # nothing built unwatched


def test_a_callback_class_given_for_an_instance_is_refused() -> None:
    """``add(Collect)`` has on_start and on_end (unbound): it would fail on every step, quietly."""
    with pytest.raises(ConfigError, match=r"Collect\(\)"):
        cb.add(Collect)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Collect\(\)"):
        with context(callbacks=[Collect]):
            pass
    assert Collect not in cb.registered()


def test_async_calls_send_the_same_events() -> None:
    seen = Collect()

    async def main() -> None:
        with context(lm=FakeLM([{"a": "1"}, {"a": "2"}]), callbacks=[seen]):
            await asyncio.gather(Box().acall(q="a"), Box().acall(q="b"))

    asyncio.run(main())
    by_id = {e.id: e for e in seen.starts}
    lms = [e for e in seen.starts if e.kind == "lm"]
    assert len(lms) == 2
    for call in lms:  # each LM call sits under its own Predict, under its own Box
        predict = by_id[call.parent_id]
        box = by_id[predict.parent_id]
        assert (predict.name, box.name, box.parent_id) == ("Predict", "Box", None)
    assert len({by_id[c.parent_id].parent_id for c in lms}) == 2


class Shelf:
    """A retriever over three fixed passages."""

    def search(self, queries, *, k):
        return [[Passage(id=str(i), title="", text=f"{q} {i}") for i in range(k)] for q in queries]

    def config(self):
        return {"type": "shelf"}


def test_retrieval_and_tool_steps() -> None:
    seen = Collect()

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    with context(callbacks=[seen]):
        passages = Retrieve(Shelf(), k=2)(query="paris").passages
        result = Tool(add).run({"a": 2, "b": 3})
        failed = Tool(add).run({"a": "two"})
        awaited = asyncio.run(Tool(add).arun({"a": 1, "b": 1}))
    kinds = [(e.kind, e.name) for e in seen.ends]
    assert ("retrieval", "Shelf") in kinds and kinds.count(("tool", "add")) == 3
    retrieval = next(e for e in seen.ends if e.kind == "retrieval")
    assert retrieval.inputs == {"query": "paris", "k": 2} and retrieval.outputs == passages
    tools = [e for e in seen.ends if e.kind == "tool"]
    assert tools[0].outputs is result and result.observation == "5"
    assert tools[1].outputs is failed and failed.error is not None
    assert tools[2].outputs is awaited and awaited.observation == "2"


def test_a_dry_run_sends_no_module_events() -> None:
    seen = Collect()
    with context(lm=FakeLM([]), callbacks=[seen]):
        calls = Box().render_calls(q="x")
    assert len(calls) == 1 and seen.starts == []
