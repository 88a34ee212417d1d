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
from services.store.replica_rpc import serve_replica
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


async def test_without_the_setting_notices_start_when_a_mirror_asks_for_the_journal(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """POSTERN_MIRROR_CHANGED_NOTICES unset: a store no mirror has asked anything
    registers no listener and publishes nothing; the first ``postern.replica.accounts``
    (every mirror source's first request) starts the notices."""
    bus = await fresh_bus(own_nats.url)
    store = await MailStore.open(tmp_path / "store")
    told: asyncio.Queue[list[str]] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await told.put(json.loads(msg.data))

    sub = await bus.nc.subscribe(names.SUBJECT_MIRROR_CHANGED, cb=on_msg)
    notices = ChangedNotices.for_store(store, bus.nc, None)
    subs = await serve_replica(bus, store, on_mirror=notices.mirror_seen)
    try:
        first, second = await store.account("acct-1"), await store.account("acct-2")
        await first.append((await first.mailbox("INBOX")).id, message("before"))
        assert store.journal_listeners == []  # nothing per commit without a mirror
        await bus.nc.flush()
        await bus.nc.request(names.SUBJECT_REPLICA + "accounts", b"{}", timeout=30)
        assert store.journal_listeners == [notices]
        await second.append((await second.mailbox("INBOX")).id, message("after"))
        # the first notice names the commit after the mirror asked, not the one before
        assert await asyncio.wait_for(told.get(), 30) == ["acct-2"]
        assert told.empty()
    finally:
        for s in subs:
            await s.unsubscribe()
        await notices.stop()
        await sub.unsubscribe()
        await store.close()
        await bus.close()


async def test_the_setting_forces_notices_on_or_off(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "store")
    try:
        on = ChangedNotices.for_store(store, None, True)
        assert store.journal_listeners == [on]
        off = ChangedNotices.for_store(store, None, False)
        off.mirror_seen()  # a mirror asking changes nothing when told never
        assert store.journal_listeners == [on]
    finally:
        await store.close()
