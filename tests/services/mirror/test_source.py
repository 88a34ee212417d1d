"""The source against a real store (in process) and a real nats-server: woken by the
store's change notice, it reads only the accounts named; a full pass reads every one;
the bodies of a batch are asked of the store together."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.mailstore import MailStore
from mailcore.mailstore.records import AppendRecord
from services.mirror.followers import Nudge
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


async def test_the_bodies_of_a_batch_come_in_one_request(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """``bodies``: the store answers for several messages at once (inline bytes one after
    the other, a large one as a MIRROR_BODIES object), and the source ships each record
    with its own body."""
    bus = await fresh_bus(own_nats.url)
    store = await MailStore.open(tmp_path / "store")
    subs = await serve_replica(bus, store)
    try:
        await queue.declare(bus.js, "store-b", 64 * 1024**2)
        acct = await store.account("acct-1")
        inbox = (await acct.mailbox("INBOX")).id
        small = [message("one"), message("two")]
        big = b"From: big@x.example\r\nSubject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 9000
        for data in (*small, big):
            await acct.append(inbox, data)
        appends = [r for r in await acct.replication.read(0) if isinstance(r, AppendRecord)]
        ask = {"account": "acct-1", "file_ids": [r.file_id for r in appends]}
        reply = await bus.nc.request(
            names.SUBJECT_REPLICA + "bodies", json.dumps(ask).encode(), timeout=30
        )
        head, _, rest = reply.data.partition(b"\n")
        name = f"acct-1.{appends[2].file_id}"
        assert json.loads(head) == [
            ["inline", len(small[0])],
            ["inline", len(small[1])],
            [f"object:{name}", 0],
        ]
        assert rest == small[0] + small[1]
        source = Source(bus.nc, bus.js, "store-b")
        sent = await source.pass_once()  # the mailboxes' creations, then the appends
        stream = queue.stream_name("store-b")
        every = [await bus.js.get_msg(stream, seq=s) for s in range(1, sent + 1)]
        shipped = [
            m
            for m in every
            if json.loads((m.headers or {})[names.HDR_MIRROR_RECORD])[1] == "append"
        ]
        assert [m.data or b"" for m in shipped] == [*small, b""]
        assert [(m.headers or {})[names.HDR_MIRROR_BODY] for m in shipped] == [
            "inline",
            "inline",
            f"object:{name}",
        ]
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await store.close()
        await bus.close()


async def test_change_notices_reach_every_source_and_the_due_pass_reads_those(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """The store's notice reaches the peer's source and each follower's (followers.Nudge);
    within a poll interval of the last full pass, the due pass reads the accounts named
    and answers 0 (then wait for the next notice); past it, every account."""
    bus = await fresh_bus(own_nats.url)
    store = await MailStore.open(tmp_path / "store")
    subs = await serve_replica(bus, store)
    nudge = Nudge()
    woken = nudge.event()
    peer, follower = Source(bus.nc, bus.js, "store-b"), Source(bus.nc, bus.js, "store-c")
    nudge.sources += [peer, follower]
    changed = await nudge.subscribe_changed(bus.nc)
    try:
        await queue.declare(bus.js, "store-b", 64 * 1024**2)
        one, two = await store.account("acct-1"), await store.account("acct-2")
        assert await peer.pass_due(every=3600) > 0  # the first pass reads every account
        shipped, _ = await queue.queue(bus.js, "store-b")
        for acct in (one, two):
            await acct.append((await acct.mailbox("INBOX")).id, message(acct.id))
        await bus.nc.publish(names.SUBJECT_MIRROR_CHANGED, json.dumps(["acct-2"]).encode())
        await asyncio.wait_for(woken.wait(), 30)  # (30: no hang)
        assert peer.changed == {"acct-2"} and follower.changed == {"acct-2"}
        assert await peer.pass_due(every=3600) == 0  # acct-2 only, then wait
        assert (await queue.queue(bus.js, "store-b"))[0] == shipped + 1
        assert await peer.pass_due(every=0) == 1  # a full pass: acct-1's append
    finally:
        await changed.unsubscribe()
        for sub in subs:
            await sub.unsubscribe()
        await store.close()
        await bus.close()
