"""The sink against a real store (in process) and a real nats-server: records apply in
order, acked after the commit; a record replica apply refuses is kept with its body in
MIRROR_CONFLICTS and counted, never lost, and replication carries on."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from prometheus_client import REGISTRY

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.mailstore import MailStore, journal
from mailcore.mailstore.records import AppendRecord
from services.mirror.sink import STREAM_CONFLICTS, Sink
from services.store.replica_rpc import serve_replica
from tests.conftest import fresh_bus
from tests.mailcore.mailstore.conftest import message
from tests.support.daemons import NatsServer


def _conflicts(kind: str) -> float:
    return REGISTRY.get_sample_value("mirror_conflicts_total", {"kind": kind}) or 0.0


async def test_conflicting_record_is_kept_and_the_rest_applied(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    bus = await fresh_bus(own_nats.url)
    store = await MailStore.open(tmp_path / "store")
    subs = await serve_replica(bus, store)
    sink = Sink(bus.nc, bus.js, bus.js, "store-b", "store-a")
    try:
        acct = await store.account("acct-1")
        inbox = await acct.mailbox("INBOX")
        await queue.declare(bus.js, "store-b", 64 * 1024**2)
        good, bad = message("good"), message("bad")

        def append(mailbox_id: int, uidvalidity: int, data: bytes, seq: int) -> AppendRecord:
            sha = hashlib.sha256(data).hexdigest()
            return AppendRecord(
                seq, 1.0, mailbox_id, uidvalidity, 1, 5, 2.0, len(data), sha, 1, frozenset()
            )

        for rec, data in (
            (append(999, 7, bad, 1), bad),  # no such mailbox here: a conflict
            (append(inbox.id, inbox.uidvalidity, good, 2), good),
        ):
            await bus.js.publish(
                queue.subject("store-b"),
                data,
                headers={
                    names.HDR_MIRROR_ACCOUNT: "acct-1",
                    names.HDR_MIRROR_RECORD: json.dumps(journal.encode(rec)),
                    names.HDR_MIRROR_BODY: "inline",
                },
            )
        before = _conflicts("mailbox")
        handled = 0
        while handled < 2:
            handled += await sink.pass_once(batch=10)
        assert sink.stats.applied == 1 and sink.stats.conflicts == 1
        assert _conflicts("mailbox") == before + 1
        kept = await bus.js.get_msg(STREAM_CONFLICTS, seq=1)
        assert kept.data == bad
        assert kept.headers is not None
        assert json.loads(kept.headers["Postern-Mirror-Conflict"])["mailbox_id"] == 999
        snap = await acct.snapshot(inbox.id)
        assert snap.uids == [1]  # the peer's UID, not one allocated here
        count, _ = await queue.queue(bus.js, "store-b")
        assert count == 0  # both acked
    finally:
        await sink.stop()
        for sub in subs:
            await sub.unsubscribe()
        await store.close()
        await bus.close()


async def test_the_next_batch_is_fetched_while_one_is_applied_and_put_back_on_stop(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """Two batches in flight: while the store applies one, the next is fetched from the
    peer's queue; the chained batch applies in order, and the one still held when the
    sink stops goes back to the queue: a new sink applies it, each record once."""
    bus = await fresh_bus(own_nats.url)
    store = await MailStore.open(tmp_path / "store")
    subs = await serve_replica(bus, store)
    sink = Sink(bus.nc, bus.js, bus.js, "store-b", "store-a")
    again = Sink(bus.nc, bus.js, bus.js, "store-b", "store-a")
    try:
        acct = await store.account("acct-1")
        inbox = await acct.mailbox("INBOX")
        await queue.declare(bus.js, "store-b", 64 * 1024**2)

        async def publish(uid: int) -> None:
            data = message(f"m{uid}")
            rec = AppendRecord(
                uid,
                1.0,
                inbox.id,
                inbox.uidvalidity,
                uid,
                uid + 4,
                2.0,
                len(data),
                hashlib.sha256(data).hexdigest(),
                uid,
                frozenset(),
            )
            await bus.js.publish(
                queue.subject("store-b"),
                data,
                headers={
                    names.HDR_MIRROR_ACCOUNT: "acct-1",
                    names.HDR_MIRROR_RECORD: json.dumps(journal.encode(rec)),
                    names.HDR_MIRROR_BODY: "inline",
                },
            )

        for uid in range(1, 26):
            await publish(uid)
        assert await sink.pass_once(batch=10) == 10
        assert await sink.fetched_ahead() == 10  # records 11-20, delivered, not acked
        assert (await acct.snapshot(inbox.id)).uids == list(range(1, 11))
        assert await sink.pass_once(batch=10) == 10  # the batch fetched ahead
        assert (await acct.snapshot(inbox.id)).uids == list(range(1, 21))
        assert await sink.fetched_ahead() == 5
        await sink.stop()  # 21-25 go back to the queue
        assert await sink.fetched_ahead() == 0
        assert (await queue.queue(bus.js, "store-b"))[0] == 5
        # a fetch made on an emptied queue (the next one, ahead) may wait an hour here,
        # but hands over the first record to come, not when 10 came or the hour is over
        assert await again.pass_once(batch=10, timeout=3600) == 5
        assert (await acct.snapshot(inbox.id)).uids == list(range(1, 26))
        assert again.stats.applied == 5 and again.stats.duplicates == 0
        await publish(26)
        assert await asyncio.wait_for(again.fetched_ahead(), 60) == 1  # (60: no hang)
        assert await again.pass_once(batch=10) == 1
        assert (await acct.snapshot(inbox.id)).uids == list(range(1, 27))
        assert (await queue.queue(bus.js, "store-b"))[0] == 0
    finally:
        await sink.stop()
        await again.stop()
        for sub in subs:
            await sub.unsubscribe()
        await store.close()
        await bus.close()


async def test_a_batch_out_of_stream_order_applies_from_its_oldest_record(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """Redeliveries and first deliveries come mixed in one fetch, the oldest record left in
    the queue anywhere in it: the batch is taken in stream order, not judged by its first
    message (which put every record back, again and again, while the oldest was never
    first: a pair stuck after its link was reset under load)."""
    bus = await fresh_bus(own_nats.url)
    sink = Sink(bus.nc, bus.js, bus.js, "store-b", "store-a")
    try:
        await queue.declare(bus.js, "store-b", 64 * 1024**2)
        for n in range(1, 6):
            await bus.js.publish(queue.subject("store-b"), f"record {n}".encode())
        await sink.start()
        assert sink._sub is not None
        fetched = await sink._sub.fetch(5, timeout=5)
        mixed = [fetched[3], fetched[0], fetched[4], fetched[1], fetched[2]]
        ordered = await sink._in_order(mixed)
        assert [m.metadata.sequence.stream for m in ordered] == [1, 2, 3, 4, 5]
    finally:
        await sink.stop()
        await bus.close()
