"""The store's mirror role (docs/mirror.md "Roles"): only the master consumes inbound mail.

Without ``POSTERN_MIRROR_ROLE`` the store is alone and always consumes. With it, the role
record in ``MIRROR_ROLE`` on the store's NATS (mailcore.bus.roles) decides, read every
second: the delivery consumer runs while it says ``master`` and is stopped — its batch in
flight committed and acked first — when it says ``slave``. Each round writes the store's
heartbeat (consuming or not, at which epoch) for ``mailctl mirror promote``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from mailcore.bus import roles
from mailcore.logging import get_logger

log = get_logger("store")

Run = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class RoleGate:
    def __init__(self, js: object, setting: str, node: str, run: Run) -> None:
        self.js, self.setting, self.node, self._run = js, setting, node, run
        self.role = setting or roles.MASTER
        self.epoch = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def consuming(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name="delivery")

    async def _halt(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None

    async def step(self) -> None:
        """Read the role record once; start or stop delivery to match it."""
        if self.setting:
            rec = await roles.ensure(self.js, self.setting, self.node)
            if (rec.role, rec.epoch) != (self.role, self.epoch):
                log.info("mirror role", role=rec.role, epoch=rec.epoch)
            self.role, self.epoch = rec.role, rec.epoch
        if self.role == roles.MASTER and not self.consuming:
            await self._start()
        elif self.role != roles.MASTER and self._task is not None:
            await self._halt()
            log.info("slave: inbound mail is left to the master")
        if self.setting:
            await roles.write_beat(self.js, self.consuming, self.epoch)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.step()
            except Exception as exc:  # NATS away: keep the current state, try again
                log.warning("mirror role not read", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), roles.HEARTBEAT)
        await self._halt()
        if self.setting:
            with contextlib.suppress(Exception):
                await roles.write_beat(self.js, False, self.epoch)


__all__ = ["RoleGate"]
