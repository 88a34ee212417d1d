"""Forced replica apply (mailstore/repair.py): flags with an older modseq, a message added
over an expunged UID or over another message, UIDs removed, folders and subscriptions
made equal; every write journalled with its origin, digests kept right."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from mailcore.mailstore import FlagOp, MailStore
from mailcore.mailstore.digest import recompute
from mailcore.mailstore.layout import index_path
from mailcore.mailstore.records import AppendRecord
from mailcore.mailstore.repair import MailboxState, Repair
from tests.mailcore.mailstore.conftest import message


def _digests_right(store: MailStore, account: str) -> None:
    conn = sqlite3.connect(index_path(store.root / "accounts" / account))
    try:
        for box_id, stored in conn.execute("SELECT id, digest FROM mailboxes").fetchall():
            value = recompute(conn, box_id)
            assert (value.to_bytes(32, "big") if value else None) == stored
    finally:
        conn.close()


async def test_forced_writes(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "store")
    try:
        acct = await store.account("acct-1")
        rep = Repair(acct, "store-a")
        inbox = await acct.mailbox("INBOX")
        uids = [(await acct.append(inbox.id, message(f"m{i}"))).uid for i in range(4)]
        await acct.store_flags(inbox.id, uids[:1], FlagOp.ADD, {"\\Seen"})
        await acct.store_flags(inbox.id, uids[:1], FlagOp.ADD, {"\\Flagged"})
        high = (await acct.snapshot(inbox.id)).modseqs[0]
        # flags carrying an older modseq are set, modseq and all
        assert await rep.flags(inbox.id, uids[0], 2, frozenset({"\\Answered"}))
        snap = await acct.snapshot(inbox.id)
        assert snap.flags[0] == {"\\Answered"} and snap.modseqs[0] == 2 < high
        assert not await rep.flags(inbox.id, uids[0], 2, frozenset({"\\Answered"}))
        # expunge, then the same UID forced back (replica apply would ignore it)
        assert await rep.expunge(inbox.id, [uids[1], 999], 50) == 1
        data = message("back")
        rec = AppendRecord(
            0, 1.0e9, inbox.id, inbox.uidvalidity, uids[1], 7, 1.0e9, len(data),
            hashlib.sha256(data).hexdigest(), 0, frozenset({"$x"}),
        )  # fmt: skip
        assert await rep.append(rec, data)
        # another message under a UID that is held: replaced
        other = message("other")
        rec2 = AppendRecord(
            0, 1.0e9, inbox.id, inbox.uidvalidity, uids[2], 8, 1.0e9, len(other),
            hashlib.sha256(other).hexdigest(), 0, frozenset(),
        )  # fmt: skip
        assert await rep.append(rec2, other)
        assert not await rep.append(rec2, other)
        rows = {r.uid: r for r in await rep.uid_rows(inbox.id, 1, 100)}
        assert rows[uids[1]].sha256 == hashlib.sha256(data).hexdigest()
        assert rows[uids[1]].flags == {"$x"} and rows[uids[1]].modseq == 7
        assert rows[uids[2]].sha256 == hashlib.sha256(other).hexdigest()
        assert sorted(rows) == sorted(uids)
        # folders: a new one with its id, UIDVALIDITY and UIDNEXT; a rename; a drop
        box = MailboxState(77, "Archive/2020", None, 4242, 30, 60, 0, "0" * 64)
        assert await rep.mailbox(box)
        info = await acct.mailbox("Archive/2020")
        assert (info.id, info.uidvalidity) == (77, 4242)
        assert (await acct.status(77)).uidnext == 30
        assert await rep.mailbox(MailboxState(77, "Old", None, 4242, 30, 60, 0, "0" * 64))
        assert (await acct.mailbox_by_id(77)).name == "Old"
        # a name held by another id: that one goes, the peer's comes
        trash = await acct.mailbox("Trash")
        assert await rep.mailbox(MailboxState(88, "Trash", None, 5, 1, 60, 0, "0" * 64))
        assert (await acct.mailbox("Trash")).id == 88 != trash.id
        assert await rep.drop(77, 61)
        assert "Old" not in [b.name for b in await acct.list_mailboxes()]
        assert await rep.subscriptions(["INBOX", "Trash"]) > 0
        assert sorted(await acct.subscriptions()) == ["INBOX", "Trash"]
        assert await rep.subscriptions(["INBOX", "Trash"]) == 0
        assert await rep.quota(1000, 10)
        st = await rep.state()
        assert (st.quota_bytes, st.quota_messages) == (1000, 10)
        # every forced record is marked as the peer's: never shipped back to it
        head = acct.replication.head
        await acct.replication.register_reader("mirror:store-a", position=head - 5)
        skipped, last = await acct.replication.read_skipping("mirror:store-a", "store-a", 100)
        assert skipped == [] and last == head
    finally:
        await store.close()
    _digests_right(store, "acct-1")
