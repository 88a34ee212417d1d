"""``postern.mirror.changed``: after a commit moves an account's journal, the store tells
its mirror process which accounts changed, so the mirror's source reads them at once
instead of at its next poll (``POSTERN_MIRROR_POLL_INTERVAL``, services/mirror/app.py).

Commits that come in one step of the event loop go out as one notice (a JSON list of
account ids). A notice is a hint, never waited for: one lost (no mirror running, NATS
away) delays a record until the mirror's next full pass, it never loses it (the journal
and the reader's confirmed position decide what is shipped).

Only a store with a mirror publishes (``POSTERN_MIRROR_CHANGED_NOTICES`` unset): the
notices start the first time a mirror asks the store for its accounts or journal
(``postern.replica.accounts``/``read``, services/store/replica_rpc.py), which every
mirror's source does at its start and each poll. Before that no listener is registered,
so a store without a mirror spends nothing per commit (a NATS publish per event-loop step
with commits was ~4 % of the IMAP store's GIL samples, bench/README.md W4b). ``true``
publishes from the start, ``false`` never.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from mailcore.bus import names
from mailcore.mailstore import MailStore


class ChangedNotices:
    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._store: MailStore | None = None  # set while waiting for a mirror

    @classmethod
    def for_store(cls, store: MailStore, nc: Any, setting: bool | None) -> ChangedNotices:
        """The store's notices per ``POSTERN_MIRROR_CHANGED_NOTICES``: listening at once
        (true), never (false), or from :meth:`mirror_seen` on (unset)."""
        notices = cls(nc)
        if setting:
            store.journal_listeners.append(notices)
        elif setting is None:
            notices._store = store
        return notices

    def mirror_seen(self) -> None:
        """A mirror asked for the journal: tell it of every commit from now on."""
        store, self._store = self._store, None
        if store is not None:
            store.journal_listeners.append(self)

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
