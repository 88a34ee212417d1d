"""The store's change notices to its mirror (services/store/mirror_changed.py): a commit
that moves an account's journal is told on ``postern.mirror.changed`` with the account's
id, on a real nats-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from mailcore.bus import names
from mailcore.mailstore import MailStore
from services.store.mirror_changed import ChangedNotices
from tests.conftest import fresh_bus
from tests.mailcore.mailstore.conftest import message
from tests.support.daemons import NatsServer


async def test_a_commit_is_told_to_the_mirror_with_its_account(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    bus = await fresh_bus(own_nats.url)
    store = await MailStore.open(tmp_path / "store")
    told: asyncio.Queue[list[str]] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await told.put(json.loads(msg.data))

    sub = await bus.nc.subscribe(names.SUBJECT_MIRROR_CHANGED, cb=on_msg)
    notices = ChangedNotices(bus.nc)
    try:
        acct = await store.account("acct-1")  # created before the listener: not told
        store.journal_listeners.append(notices)
        await acct.append((await acct.mailbox("INBOX")).id, message("one"))
        assert await asyncio.wait_for(told.get(), 30) == ["acct-1"]  # (no hang if never)
    finally:
        await notices.stop()
        await sub.unsubscribe()
        await store.close()
        await bus.close()
