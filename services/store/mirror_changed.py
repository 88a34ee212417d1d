"""``postern.mirror.changed``: after a commit moves an account's journal, the store tells
its mirror process which accounts changed, so the mirror's source reads them at once
instead of at its next poll (``POSTERN_MIRROR_POLL_INTERVAL``, services/mirror/app.py).

Commits that come in one step of the event loop go out as one notice (a JSON list of
account ids). A notice is a hint, never waited for: one lost (no mirror running, NATS
away) delays a record until the mirror's next full pass, it never loses it (the journal
and the reader's confirmed position decide what is shipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from mailcore.bus import names


class ChangedNotices:
    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def __call__(self, account_id: str) -> None:  # a MailStore journal listener
        self._pending.add(account_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._pending:
            accounts, self._pending = sorted(self._pending), set()
            with contextlib.suppress(Exception):  # a hint: the mirror also polls
                await self.nc.publish(names.SUBJECT_MIRROR_CHANGED, json.dumps(accounts).encode())

    async def stop(self) -> None:
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task


__all__ = ["ChangedNotices"]
