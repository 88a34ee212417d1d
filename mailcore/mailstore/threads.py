"""Writer threads: every write of an account runs on the same thread, one at a time, so
the event loop never waits for SQLite or an fsync.

Transaction jobs (:meth:`Writer.submit_txn`) queued for the same account while the thread
was busy run together as one group commit (:meth:`AccountCore.txn_group`): one fsync for
all of them instead of one each, so fifty sessions writing to one mailbox wait for the
disk about once per batch rather than once per command."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mailcore.mailstore.errors import StoreClosed

T = TypeVar("T")
GROUP_MAX = 64  # writes committed together at most

# What the writer thread answering a job (or group) collects to run on the caller's loop
# together with the answers: one cross-thread wake-up of the event loop per job or group
# instead of one per answer plus one per commit notice (Account._committed).
_local = threading.local()


@contextlib.contextmanager
def deferring(loop: asyncio.AbstractEventLoop) -> Iterator[list[Callable[[], object]]]:
    """Collect what :func:`defer` is asked to run on ``loop`` while the block runs on the
    calling thread (a write the event loop runs itself: AccountCore.txn_inline); the
    caller runs the calls after it, as the writer would before its answer."""
    calls: list[Callable[[], object]] = []
    _local.loop, _local.calls = loop, calls
    try:
        yield calls
    finally:
        _local.loop = _local.calls = None


def defer(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> bool:
    """Run ``fn`` on ``loop`` just before the answers of the job the calling writer
    thread is running (True); False when the thread answers no job on ``loop`` (then
    schedule it yourself)."""
    calls: list[Callable[[], object]] | None = getattr(_local, "calls", None)
    if calls is None or getattr(_local, "loop", None) is not loop:
        return False
    calls.append(fn)
    return True


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


def _settle(
    calls: list[Callable[[], object]],
    answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
) -> None:
    """On the loop: the deferred calls (commit notices), then every answer (whatever a
    deferred call raised: nobody may be left waiting)."""
    try:
        for fn in calls:
            fn()
    finally:
        for fut, result, exc in answers:
            _resolve(fut, result, exc)


class Writer:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: list[_Job | None] = []  # taken off the queue while grouping
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False
        # transaction jobs per account submitted and not yet run to the end: an account
        # listed here is busy on this thread (a write of its own must queue behind)
        self._pending: dict[Grouping, int] = {}
        self._plock = threading.Lock()
        self._thread.start()

    def busy_with(self, core: Grouping) -> bool:
        """Whether a transaction job of ``core`` is queued or running here."""
        return core in self._pending

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
        with self._plock:
            self._pending[core] = self._pending.get(core, 0) + 1
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
                self._answer_all([job], functools.partial(_call_one, job.fn))
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

        def run() -> list[tuple[Any, BaseException | None]]:
            try:
                return list(core.txn_group(steps, durable=any(j.durable for j in group)))
            except BaseException as e:  # the transaction failed as a whole
                return [(None, e)] * len(group)
            finally:
                with self._plock:
                    left = self._pending.get(core, 0) - len(group)
                    if left > 0:
                        self._pending[core] = left
                    else:
                        self._pending.pop(core, None)

        self._answer_all(group, run)

    @staticmethod
    def _answer_all(
        jobs: list[_Job], run: Callable[[], list[tuple[Any, BaseException | None]]]
    ) -> None:
        """``run`` the jobs, then answer them all (and whatever their commits deferred to
        their loop, :func:`defer`) with one ``call_soon_threadsafe``: each is a wake-up
        of the event loop, which on a machine with more runnable threads than cores
        waits its turn in the run queue."""
        loop = jobs[0].loop
        if any(j.loop is not loop for j in jobs):
            loop = None  # callers on several loops: defer nothing
        calls: list[Callable[[], object]] = []
        _local.loop, _local.calls = loop, calls
        try:
            outcomes = run()
        finally:
            _local.loop = _local.calls = None
        answers = []
        for j, (result, exc) in zip(jobs, outcomes, strict=True):
            if j.fut is None or j.loop is None:
                continue  # posted: nobody waits
            if loop is None:
                _post_to(j.loop, _resolve, j.fut, result, exc)
            else:
                answers.append((j.fut, result, exc))
        if calls or answers:
            _post_to(loop, _settle, calls, answers)

    def stop(self) -> None:
        """Finish every queued job, then end the thread."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
        self._thread.join()


def _call_one(fn: Callable[[], Any]) -> list[tuple[Any, BaseException | None]]:
    try:
        return [(fn(), None)]
    except BaseException as e:  # handed to the awaiting coroutine
        return [(None, e)]


def _post_to(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., None], *args: Any) -> None:
    if loop is None:
        return
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is gone; nobody waits any more
        pass
