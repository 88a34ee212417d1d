"""Large bodies (above 512 KiB) through MIRROR_BODIES: once the receiving store committed
the record, the sink deletes the object on both sides; the same record delivered again
later (a republish outside the de-duplication window) finds the object gone and gets the
bytes from the sending store's replica service instead of failing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.js.errors import NotFoundError

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.mailstore import MailStore, journal
from mailcore.mailstore.records import AppendRecord
from services.mirror.sink import Sink
from services.store.replica_rpc import serve_replica
from tests.conftest import fresh_bus
from tests.support.daemons import NatsServer


async def live_objects(bus: Bus) -> list[str]:
    try:
        store = await bus.js.object_store(names.OBJ_MIRROR_BODIES)
        return [o.name for o in await store.list(ignore_deletes=True) if not o.deleted]
    except NotFoundError:
        return []


async def ship(sender: Bus, account: str, row: Any, generation: int) -> None:
    """What the source does with one journal row (body through the sender's store)."""
    headers = {
        names.HDR_MIRROR_ACCOUNT: account,
        names.HDR_MIRROR_RECORD: json.dumps(row),
        names.HDR_MSG_ID: f"{account}:{row[0]}:{generation}",
        names.HDR_MIRROR_BODY: "none",
    }
    data = b""
    rec = journal.decode(tuple(row))
    if isinstance(rec, AppendRecord):
        reply = await sender.nc.request(
            names.SUBJECT_REPLICA + "body",
            json.dumps({"account": account, "file_id": rec.file_id}).encode(),
            timeout=30,
        )
        headers[names.HDR_MIRROR_BODY] = (reply.headers or {})[names.HDR_MIRROR_BODY]
        data = reply.data
    await sender.js.publish(queue.subject("store-b"), data, headers=headers)


async def test_large_body_objects_go_on_both_sides_and_a_resend_still_applies(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    peer_nats = NatsServer(tmp_path / "peer-nats")  # the sending store's own server
    peer_nats.start()
    sender, receiver = await fresh_bus(peer_nats.url), await fresh_bus(own_nats.url)
    store_a = await MailStore.open(tmp_path / "a")
    store_b = await MailStore.open(tmp_path / "b")
    subs = await serve_replica(sender, store_a) + await serve_replica(receiver, store_b)
    sink = Sink(receiver.nc, receiver.js, sender.js, "store-b", "store-a")
    try:
        acct = await store_a.account("acct-1")
        inbox = await acct.mailbox("INBOX")
        big = b"From: big@x.example\r\nSubject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 9000
        await acct.append(inbox.id, big)
        await queue.declare(sender.js, "store-b", 64 * 1024**2)
        rows = [journal.encode(r) for r in await acct.replication.read(0)]
        for row in rows:
            await ship(sender, "acct-1", row, 0)
        assert len(await live_objects(sender)) == 1  # the body waits on the sending side
        handled = 0
        while handled < len(rows):
            handled += await sink.pass_once(batch=100)
        got = await store_b.account("acct-1", replica=True)
        box = await got.mailbox("INBOX")
        snap = await got.snapshot(box.id)
        assert snap.uids == [1]
        assert await live_objects(sender) == [] and await live_objects(receiver) == []
        # the append sent again (a new generation: not a duplicate for the stream) while
        # its object is gone: the sink asks the sending store, and it applies (no change)
        append_row = next(r for r in rows if r[1] == "append")
        await ship(sender, "acct-1", append_row, 1)
        objects = await sender.js.object_store(names.OBJ_MIRROR_BODIES)
        for name in await live_objects(sender):
            await objects.delete(name)  # deleted before the resend was applied
        while not await sink.pass_once(batch=10):
            pass
        assert sink.stats.duplicates == 1 and sink.stats.last_error is None
        assert (await got.snapshot(box.id)).uids == [1]
        count, _ = await queue.queue(sender.js, "store-b")
        assert count == 0
        assert await live_objects(sender) == [] and await live_objects(receiver) == []
    finally:
        await sink.stop()
        for sub in subs:
            await sub.unsubscribe()
        await store_a.close()
        await store_b.close()
        await sender.close()
        await receiver.close()
        peer_nats.stop()
