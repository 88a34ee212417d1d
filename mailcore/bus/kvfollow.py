"""Keeping an in-memory copy of a KV bucket: every live key once, then each change.

The directory (mailcore/directory.py) and the credentials (mailcore/credentials.py) are
both such copies; this is their shared life cycle: a watch task that starts afresh after
an error or a reconnect, a one-off read for processes that do not follow, and a ``synced``
flag for health checks. What the values mean is the caller's: it gets every live entry
at once (``on_all``) and then each change (``on_change``, value None for a delete).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mailcore.bus import kvwatch
from mailcore.logging import get_logger

log = get_logger("bus")

OnAll = Callable[[dict[str, KeyValue.Entry]], None]
OnChange = Callable[[str, bytes | None], None]


class BucketFollower:
    """Follows the bucket ``bucket`` (opened as ``kv``) into the two callbacks."""

    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        kv: KeyValue,
        on_all: OnAll,
        on_change: OnChange,
    ) -> None:
        self._js = js
        self.bucket = bucket
        self.kv = kv
        self._on_all = on_all
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._watcher: Any = None  # nats-py's KeyWatcher of the running watch
        self._synced = asyncio.Event()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def start(self, timeout: float = 30.0) -> None:
        """Follow until :meth:`stop`; returns once every live key has been handed over."""
        self._task = asyncio.create_task(self._forever(), name=f"kv-watch-{self.bucket}")
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def reload(self) -> None:
        """Read every live key once (for a process that does not follow the bucket)."""
        last = await kvwatch.last_revision(self._js, self.bucket)
        watcher: Any = await self.kv.watchall()
        try:
            values = await kvwatch.initial_values(watcher, last)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), 5)
        self._all(values)

    async def stop(self) -> None:
        """Stop following: unsubscribe the watch, then end its task."""
        task, self._task = self._task, None
        await self._stop(task)

    async def restart(self) -> None:
        """Follow afresh (after a NATS reconnect the old watch may be gone)."""
        if self._task is not None:
            await self._stop(self._task)
            self._task = asyncio.create_task(self._forever(), name=f"kv-watch-{self.bucket}")

    async def _stop(self, task: asyncio.Task[None] | None) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), 5)
        if task is not None:
            task.cancel()
            # Bounded: on Python 3.11 a cancel can be swallowed inside a library's wait_for.
            await asyncio.wait({task}, timeout=5)

    def _all(self, values: dict[str, KeyValue.Entry]) -> None:
        self._on_all(values)
        self._synced.set()

    async def _forever(self) -> None:
        while True:
            try:
                last = await kvwatch.last_revision(self._js, self.bucket)
                watcher = self._watcher = await self.kv.watchall()
                self._all(await kvwatch.initial_values(watcher, last))
                async for entry in watcher:
                    if entry is None:  # nats-py's marker; see kvwatch for why it is ignored
                        continue
                    deleted = entry.operation in kvwatch.DELETE_OPERATIONS
                    self._on_change(entry.key, None if deleted else (entry.value or b""))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "kv watch restarting",
                    bucket=self.bucket,
                    error=f"{type(exc).__name__}: {exc}",
                )
            await asyncio.sleep(1.0)


__all__ = ["BucketFollower", "OnAll", "OnChange"]
