"""Writer threads: every write of an account runs on the same thread, one at a time, so
the event loop never waits for SQLite or an fsync.

Transaction jobs (:meth:`Writer.submit_txn`) queued for the same account while the thread
was busy run together as one group commit (:meth:`AccountCore.txn_group`): one fsync for
all of them instead of one each, so fifty sessions writing to one mailbox wait for the
disk about once per batch rather than once per command."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mailcore.mailstore.errors import StoreClosed

T = TypeVar("T")
GROUP_MAX = 64  # writes committed together at most


class Grouping(Protocol):
    """What runs a group of transaction steps (the account's core)."""

    def txn_group(
        self, steps: list[Callable[[Any], object]], *, durable: bool = True
    ) -> list[tuple[object, Exception | None]]: ...


@dataclass(slots=True)
class _Job:
    fn: Callable[[], Any] | None
    fut: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None
    core: Grouping | None = None  # a transaction step of this account, to group
    step: Callable[[Any], Any] | None = None
    durable: bool = True


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
        self._held: list[_Job | None] = []  # taken off the queue while grouping
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._stopped:
            fut.set_exception(StoreClosed("the mail store is closed"))
            return fut
        self._queue.put(_Job(fn, fut, loop))
        return fut

    def submit_txn(
        self, core: Grouping, step: Callable[[Any], T], *, durable: bool = True
    ) -> asyncio.Future[T]:
        """Run ``step(txn)`` in a write transaction of ``core``, grouped with the other
        steps of that account waiting at the time (group commit). A group commits
        durably when any of its steps is ``durable``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._stopped:
            fut.set_exception(StoreClosed("the mail store is closed"))
            return fut
        self._queue.put(_Job(None, fut, loop, core, step, durable))
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
        self._queue.put(_Job(fn, None, None))

    def _next(self) -> _Job | None:
        return self._held.pop(0) if self._held else self._queue.get()

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            if job.core is None:
                assert job.fn is not None
                try:
                    result, exc = job.fn(), None
                except BaseException as e:  # handed to the awaiting coroutine
                    result, exc = None, e
                self._answer(job, result, exc)
                continue
            group = [job]
            while len(group) < GROUP_MAX and not self._held:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is not None and more.core is job.core:
                    group.append(more)
                else:
                    self._held.append(more)  # another account's, or stop: after this group
            self._run_group(job.core, group)

    def _run_group(self, core: Grouping, group: list[_Job]) -> None:
        steps = [j.step for j in group if j.step is not None]
        try:
            outcomes = core.txn_group(steps, durable=any(j.durable for j in group))
        except BaseException as e:  # the transaction failed as a whole
            outcomes = [(None, e)] * len(group)  # type: ignore[list-item]
        for j, (result, exc) in zip(group, outcomes, strict=True):
            self._answer(j, result, exc)

    @staticmethod
    def _answer(job: _Job, result: Any, exc: BaseException | None) -> None:
        if job.fut is None or job.loop is None:
            return  # posted: nobody waits
        try:
            job.loop.call_soon_threadsafe(_resolve, job.fut, result, exc)
        except RuntimeError:  # the loop is gone; nobody waits any more
            pass

    def stop(self) -> None:
        """Finish every queued job, then end the thread."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
        self._thread.join()
