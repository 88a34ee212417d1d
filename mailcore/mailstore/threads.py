"""Writer threads: every write of an account runs on the same thread, one at a time, so
the event loop never waits for SQLite or an fsync."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from mailcore.mailstore.errors import StoreClosed

T = TypeVar("T")
_Job = tuple[Callable[[], Any], asyncio.Future[Any] | None, asyncio.AbstractEventLoop | None]


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class Writer:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._stopped:
            fut.set_exception(StoreClosed("the mail store is closed"))
            return fut
        self._queue.put((fn, fut, loop))
        return fut

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the writer thread after the queued jobs, from any thread, with
        nobody waiting for it (errors are dropped); inline once the writer stopped."""
        if self._stopped:
            try:
                fn()
            except Exception:  # noqa: S110 (nobody to tell; best effort by contract)
                pass
            return
        self._queue.put((fn, None, None))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            fn, fut, loop = job
            try:
                result, exc = fn(), None
            except BaseException as e:  # handed to the awaiting coroutine
                result, exc = None, e
            if fut is None or loop is None:
                continue  # posted: nobody waits
            try:
                loop.call_soon_threadsafe(_resolve, fut, result, exc)
            except RuntimeError:  # the loop is gone; nobody waits any more
                pass

    def stop(self) -> None:
        """Finish every queued job, then end the thread."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
        self._thread.join()
