"""Upgrading an index of version 2 (the schema at commit d00533d, kept in
tests/data/mailstore/schema_v2.sql) to the journal (version 3): every message is kept,
digests and the journal's baseline are made, mailbox ids are never reused, and the
journal rebuilds the account on a replica."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

from mailcore import message
from mailcore.mailstore import FlagOp, MailStore, searchdata
from mailcore.mailstore.digest import recompute, text
from mailcore.mailstore.layout import account_dir, index_path, message_path
from mailcore.mailstore.records import AppendRecord, MailboxCreateRecord, SubscribeRecord
from mailcore.mailstore.schema import SCHEMA_VERSION
from tests.mailcore.mailstore.conftest import message as make_message

SCHEMA_V2 = Path(__file__).parents[2] / "data" / "mailstore" / "schema_v2.sql"
DATAS = [make_message(f"old {i}", f"body {i}") for i in range(3)]
# (mailbox id, uid, modseq, flags, file id)
MESSAGES = [
    (1, 1, 11, "\\Seen", 1),
    (1, 2, 12, "", 2),
    (2, 5, 14, "$x \\Flagged", 3),
    (2, 6, 15, "\\Seen", 1),
]


def _old_store(root: Path) -> Path:
    """An account as version 2 wrote it: mailbox 3 (the newest) was deleted, so only the
    old change log still names it."""
    acct = account_dir(root, "old")
    acct.mkdir(parents=True)
    for fid, data in enumerate(DATAS, start=1):
        path = message_path(acct, fid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    conn = sqlite3.connect(index_path(acct))
    conn.executescript(SCHEMA_V2.read_text())
    size = sum(len(DATAS[m[4] - 1]) for m in MESSAGES)
    conn.execute("INSERT INTO state VALUES (1, 2, 4, 20, 30, 1000, ?, 4, ?)", (size, time.time()))
    conn.executemany(
        "INSERT INTO mailboxes VALUES (?, ?, ?, ?, ?, ?)",
        [(1, "INBOX", None, 990, 3, 12), (2, "Work", None, 995, 7, 15)],
    )
    conn.executemany("INSERT INTO subscriptions VALUES (?)", [("INBOX",), ("Work",), ("Gone",)])
    for fid, data in enumerate(DATAS, start=1):
        conn.execute(
            "INSERT INTO files VALUES (?, ?, ?)",
            (fid, len(data), message.dumps(message.parse(data))),
        )
    for mb, uid, modseq, flags, fid in MESSAGES:
        data = DATAS[fid - 1]
        conn.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mb,
                uid,
                modseq,
                flags,
                1.7e9 + uid,
                len(data),
                fid,
                *searchdata.of(message.parse(data), data)[: len(searchdata.SEARCH_COLUMNS)],
            ),
        )
    conn.executemany(
        "INSERT INTO changes VALUES (?, 'mailbox', ?, NULL, NULL, NULL, ?)",
        [(29, 3, "Newest"), (30, 3, None)],
    )
    conn.commit()
    conn.close()
    return acct


async def test_version_2_index_is_upgraded_keeping_every_message(tmp_path: Path) -> None:
    root = tmp_path / "s"
    path = _old_store(root)
    store = await MailStore.open(root, fsync=False)
    replica_store = await MailStore.open(tmp_path / "r", fsync=False)
    try:
        acct = await store.account("old")
        boxes = {b.name: b for b in await acct.list_mailboxes()}
        assert {n: (b.id, b.uidvalidity) for n, b in boxes.items()} == {
            "INBOX": (1, 990),
            "Work": (2, 995),
        }
        for mb, uid, modseq, flags, fid in MESSAGES:
            (rec,) = await acct.fetch(mb, [uid])
            assert (rec.modseq, rec.flags) == (modseq, frozenset(flags.split()))
            with acct.open_message(rec) as fh:
                assert fh.read() == DATAS[fid - 1]
        # the journal starts with the account as it is
        records = await acct.replication.read(0)
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        creates = [r for r in records if isinstance(r, MailboxCreateRecord)]
        assert [(r.mailbox_id, r.name, r.uidvalidity, r.uidnext, r.modseq) for r in creates] == [
            (1, "INBOX", 990, 3, 12),
            (2, "Work", 995, 7, 15),
        ]
        subs = [r.name for r in records if isinstance(r, SubscribeRecord)]
        assert subs == ["Gone", "INBOX", "Work"]
        appends = [r for r in records if isinstance(r, AppendRecord)]
        assert [(r.mailbox_id, r.uid, r.modseq, r.file_id) for r in appends] == [
            (m[0], m[1], m[2], m[4]) for m in MESSAGES
        ]
        for r in appends:
            assert r.sha256 == hashlib.sha256(DATAS[r.file_id - 1]).hexdigest()
        # digests were computed from the files
        conn = sqlite3.connect(index_path(path))
        assert conn.execute("SELECT schema FROM state").fetchone() == (SCHEMA_VERSION,)
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'changes'").fetchone()
        for box in boxes.values():
            assert (await acct.replication.digest(box.id)).digest == text(recompute(conn, box.id))
        conn.close()
        # the deleted mailbox's id (3), which only the old change log knew, is not reused
        new = await acct.create_mailbox("Newest")
        assert new.id == 4
        # new writes carry on the journal and the digest
        await acct.store_flags(1, [2], FlagOp.ADD, ["\\Answered"])
        # the journal rebuilds the account on a replica
        replica = await replica_store.account("old", replica=True)
        for rec in await acct.replication.read(0):
            data = (
                acct.replication.message_bytes(rec.file_id)
                if isinstance(rec, AppendRecord)
                else None
            )
            await replica.replication.apply(rec, data)
        assert await replica.list_mailboxes() == await acct.list_mailboxes()
        for box in await acct.list_mailboxes():
            assert await replica.replication.digest(box.id) == await acct.replication.digest(box.id)
    finally:
        await store.close()
        await replica_store.close()
