"""Deletes mirrored as a move to Trash (POSTERN_MIRROR_TRASH): a message expunged on one
store ends in Trash on both; a delete inside Trash stays final."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mailcore.mailstore import Account, MailStore
from mailcore.mailstore.records import AppendRecord
from tests.mailcore.mailstore.conftest import message


async def ship(src: Account, dst: Account, src_name: str, dst_name: str) -> int:
    reader = f"mirror:{dst_name}"
    await src.replication.register_reader(reader, position=0)
    records, last = await src.replication.read_skipping(reader, dst_name, 1000)
    for rec in records:
        data = src.replication.message_bytes(rec.file_id) if isinstance(rec, AppendRecord) else None
        await dst.replication.apply_resolving(
            rec, data, origin=src_name, resolver=dst_name < src_name, trash=True
        )
    if last:
        await src.replication.confirm(reader, last)
    return len(records)


async def shas(acct: Account, name: str) -> list[str]:
    box = await acct.mailbox(name)
    snap = await acct.snapshot(box.id)
    rows = await acct.fetch(box.id, snap.uids, parsed=False) if snap.uids else []
    out = []
    for r in rows:
        with acct.open_message(r) as fh:
            out.append(hashlib.sha256(fh.read()).hexdigest())
    return sorted(out)


async def test_a_delete_on_one_side_ends_in_trash_on_both(tmp_path: Path) -> None:
    sa, sb = await MailStore.open(tmp_path / "a"), await MailStore.open(tmp_path / "b")
    try:
        a = await sa.account("acct-1")
        b = await sb.account("acct-1", replica=True)
        inbox = await a.mailbox("INBOX")
        trash = await a.mailbox_by_role("\\Trash")
        assert trash is not None
        kept, gone = message("kept"), message("gone")
        uid_kept = (await a.append(inbox.id, kept)).uid
        uid_gone = (await a.append(inbox.id, gone)).uid
        while await ship(a, b, "store-a", "store-b") + await ship(b, a, "store-b", "store-a"):
            pass
        await a.expunge(inbox.id, [uid_gone], force=True)
        while await ship(a, b, "store-a", "store-b") + await ship(b, a, "store-b", "store-a"):
            pass
        sha = hashlib.sha256
        for acct in (a, b):
            assert await shas(acct, "INBOX") == [sha(kept).hexdigest()]
            assert await shas(acct, trash.name) == [sha(gone).hexdigest()]
        # a delete inside Trash is final, on both sides
        in_trash = (await b.snapshot(trash.id)).uids
        await b.expunge(trash.id, in_trash, force=True)
        while await ship(a, b, "store-a", "store-b") + await ship(b, a, "store-b", "store-a"):
            pass
        for acct in (a, b):
            assert await shas(acct, trash.name) == []
        assert uid_kept in (await a.snapshot(inbox.id)).uids
    finally:
        await sa.close()
        await sb.close()
