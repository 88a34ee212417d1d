"""apply_batch: a peer's records applied several per request, in order, each answered;
a refused record rolls back alone and the rest commit (real engines on disk)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mailcore.bus import replica_batch
from mailcore.bus.replica_batch import BatchEntry
from mailcore.mailstore import MailStore, journal
from mailcore.mailstore.records import AppendRecord
from services.store.replica_batch import apply_batch
from tests.mailcore.mailstore.conftest import message


async def _no_objects(name: str) -> bytes:
    raise AssertionError(f"no object expected, asked for {name}")


async def test_a_batch_applies_in_order_with_the_primarys_uids(tmp_path: Path) -> None:
    primary = await MailStore.open(tmp_path / "a")
    replica = await MailStore.open(tmp_path / "b")
    try:
        src = await primary.account("acct-1")
        box = await src.create_mailbox("Work")  # its creation record comes first
        for i in range(5):
            await src.append(box.id, message(f"m{i}"))
        records = await src.replication.read(0)
        entries = []
        for rec in records:
            data = b""
            if isinstance(rec, AppendRecord):
                data = src.replication.message_bytes(rec.file_id) or b""
            body = "inline" if data else "none"
            entries.append(BatchEntry("acct-1", journal.encode(rec), body, "store-a", data))
        # one record whose bytes do not match its SHA-256: refused alone, in the middle
        bad = next(i for i, e in enumerate(entries) if e.body == "inline") + 2
        entries[bad] = BatchEntry(
            "acct-1", entries[bad].row, "inline", "store-a", b"Subject: other\r\n\r\nx\r\n"
        )
        results = await apply_batch(replica, replica_batch.encode(entries), _no_objects)
        assert len(results) == len(entries)
        assert "conflict" in results[bad] and "SHA-256" in results[bad]["conflict"]
        assert all(r == {"applied": True} for i, r in enumerate(results) if i != bad)
        dst = await replica.account("acct-1", replica=True)
        work = await dst.mailbox("Work")
        assert work.id == box.id and work.uidvalidity == box.uidvalidity
        snap = await dst.snapshot(work.id)
        rows = await dst.fetch(work.id, snap.uids, parsed=False)
        want = [r for r in records if isinstance(r, AppendRecord)]
        refused = journal.decode(tuple(entries[bad].row))
        assert isinstance(refused, AppendRecord)
        assert [r.uid for r in rows] == [r.uid for r in want if r.uid != refused.uid]
        shas = []
        for r in rows:
            with dst.open_message(r) as fh:
                shas.append(hashlib.sha256(fh.read()).hexdigest())
        assert shas == [r.sha256 for r in want if r != refused]
        # applying the same batch again changes nothing: every record answers "applied already"
        again = await apply_batch(replica, replica_batch.encode(entries), _no_objects)
        assert [r for i, r in enumerate(again) if i != bad] == [{"applied": False}] * (
            len(entries) - 1
        )
    finally:
        await primary.close()
        await replica.close()
