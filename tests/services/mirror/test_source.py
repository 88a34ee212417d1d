"""The source against a real store (in process) and a real nats-server: woken by the
store's change notice, it reads only the accounts named; a full pass reads every one."""

from __future__ import annotations

from pathlib import Path

from mailcore.bus import mirror as queue
from mailcore.mailstore import MailStore
from services.mirror.source import Source
from services.store.replica_rpc import serve_replica
from tests.conftest import fresh_bus
from tests.mailcore.mailstore.conftest import message
from tests.support.daemons import NatsServer


async def test_a_change_notice_ships_only_the_accounts_it_names(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    bus = await fresh_bus(own_nats.url)
    store = await MailStore.open(tmp_path / "store")
    subs = await serve_replica(bus, store)
    try:
        await queue.declare(bus.js, "store-b", 64 * 1024**2)
        source = Source(bus.nc, bus.js, "store-b")
        one, two = await store.account("acct-1"), await store.account("acct-2")
        assert await source.pass_once() > 0  # both accounts' INBOX creations
        shipped, _ = await queue.queue(bus.js, "store-b")
        for acct in (one, two):
            await acct.append((await acct.mailbox("INBOX")).id, message(acct.id))
        source.on_changed(["acct-2", "acct-gone"])  # (one no longer held: left out)
        assert await source.pass_changed() == 1
        assert source.changed == set()
        assert (await queue.queue(bus.js, "store-b"))[0] == shipped + 1
        assert await source.pass_changed() == 0  # nothing named
        assert await source.pass_once() == 1  # acct-1's append: the full pass finds it
        assert (await queue.queue(bus.js, "store-b"))[0] == shipped + 2
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await store.close()
        await bus.close()
