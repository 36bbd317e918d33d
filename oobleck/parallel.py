"""Run work over many items in threads, carrying the caller's context into each worker.

Every task runs in a copy of the submitting thread's context (``contextvars.copy_context``),
so ``oobleck.context(...)`` overrides and active traces apply inside the workers.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["run", "submit"]

T = TypeVar("T")
R = TypeVar("R")


def submit(pool: ThreadPoolExecutor, fn: Callable[[T], R], item: T) -> Future[R]:
    """Submit ``fn(item)`` to ``pool`` inside a copy of the current context."""
    ctx = contextvars.copy_context()
    return pool.submit(ctx.run, fn, item)


def run(
    fn: Callable[[T], R], items: Iterable[T], *, num_threads: int = 1
) -> Generator[tuple[int, Future[R]], None, None]:
    """Run ``fn`` over ``items`` and yield ``(index, future)`` as each finishes.

    Args:
        fn: called once per item, in a worker thread that carries the caller's context.
        items: the work.
        num_threads: worker threads (1 runs inline, in order).

    Close the generator (``contextlib.closing``) to stop early: items not yet started are
    cancelled.
    """
    from concurrent.futures import as_completed

    items = list(items)
    if num_threads <= 1:
        for i, item in enumerate(items):
            fut: Future[R] = Future()
            try:
                fut.set_result(fn(item))
            except Exception as exc:  # handed to the caller through the future
                fut.set_exception(exc)
            yield i, fut
        return
    pool = ThreadPoolExecutor(max_workers=num_threads)
    try:
        futures = {submit(pool, fn, item): i for i, item in enumerate(items)}
        for fut in as_completed(futures):
            yield futures[fut], fut
    finally:
        # A caller that stops early (an error cap, Ctrl-C) closes the generator: queued items
        # are cancelled, never sent; only those already running finish.
        pool.shutdown(wait=True, cancel_futures=True)
