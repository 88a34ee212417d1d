"""Replica apply of several records in one write (replica_run.py): runs of appends that
collide with nothing are applied together, everything else one by one; either way a
replica ends exactly as when each record is applied on its own (real stores on disk)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import Account, MailStore, layout
from mailcore.mailstore.records import AppendRecord, Record
from tests.mailcore.mailstore.conftest import message

A, B = "store-a", "store-b"  # store-a sorts first: it resolves


async def journal_of(acct: Account, peer: str) -> list[tuple[Record, bytes | None]]:
    records = await acct.replication.read(0)
    out = []
    for rec in records:
        data = None
        if isinstance(rec, AppendRecord):
            data = acct.replication.message_bytes(rec.file_id)
        out.append((rec, data))
    return out


def state(path: Path) -> dict[str, Any]:
    """What a replica holds: rows that replica apply writes, the journal without times."""
    conn = sqlite3.connect(layout.index_path(layout.account_dir(path, "acct-1")))
    try:
        q = {
            "messages": "SELECT mailbox_id, uid, modseq, flags, size, sha256 FROM messages",
            "mailboxes": "SELECT id, name, uidvalidity, uidnext, highestmodseq, digest"
            " FROM mailboxes",
            "expunged": "SELECT * FROM expunged",
            "recent": "SELECT * FROM recent",
            "deliveries": "SELECT key, mailbox_id, uid FROM deliveries",
            "journal": "SELECT seq, kind, mailbox_id, data FROM journal",
            "origin": "SELECT * FROM journal_origin",
            "uid_moves": "SELECT * FROM uid_moves",
            "state": "SELECT modseq, change_seq, usage_bytes, usage_messages FROM state",
        }
        return {k: sorted(conn.execute(sql).fetchall()) for k, sql in q.items()}
    finally:
        conn.close()


def outcome(o: Any) -> Any:
    if isinstance(o, BaseException):
        return type(o).__name__, str(o)
    if isinstance(o, bool):
        return o
    return o.applied, o.notes


async def savepoints(acct: Account) -> list[str]:
    """Every SAVEPOINT the account's writer runs from now on."""
    seen: list[str] = []
    conn = acct._core.wconn
    assert conn is not None
    await acct._writer.submit(
        lambda: conn.set_trace_callback(lambda s: seen.append(s) if "SAVEPOINT" in s else None)
    )
    return seen


@pytest.mark.parametrize("resolve", [None, True, False])
@pytest.mark.parametrize("local", [0, 1, 3])
async def test_a_run_ends_as_one_by_one(tmp_path: Path, resolve: bool | None, local: int) -> None:
    """40 of the primary's deliveries applied as one write or one by one give the same
    replica, byte for byte in its index; with none of them colliding the run is one
    savepoint, not one per record. With ``local`` messages the replica took itself
    while cut off (their UIDs collide), the split-brain roles settle them alike."""
    primary = await MailStore.open(tmp_path / "primary")
    src = await primary.account("acct-1")
    inbox = await src.mailbox("INBOX")
    for i in range(40):
        await src.append(inbox.id, message(f"m{i}"))
    items = await journal_of(src, B)
    await primary.close()
    stores, accts = [], []
    for name in ("batched", "single"):
        s = await MailStore.open(tmp_path / name)
        stores.append(s)
        acct, _ = await s.replica_account("acct-1", items[0][0], origin=A)
        for j in range(local):  # its own, on UIDs the primary used too
            await acct.append(inbox.id, message(f"local{j}"), internal_date=1.7e9 + j)
        accts.append(acct)
    try:
        rest = items[1:]
        batched, single = accts
        seen = await savepoints(batched)
        got = await batched.replication.apply_many(rest, origin=A, resolve=resolve)
        want: list[object] = []
        for rec, data in rest:
            try:
                if resolve is None:
                    want.append(await single.replication.apply(rec, data, origin=A))
                else:
                    res = await single.replication.apply_resolving(
                        rec, data, origin=A, resolver=resolve
                    )
                    want.append(res)
            except Exception as exc:
                want.append(exc)
        assert [outcome(exc if exc is not None else r) for r, exc in got] == [
            outcome(w) for w in want
        ]
        if not local:
            assert all(r not in (None, False) for r, _ in got)
            # the account's other records (its mailboxes) one by one, the 40 as one run
            others = sum(not isinstance(rec, AppendRecord) for rec, _ in rest)
            assert len(seen) == others + 1
        else:
            assert len(seen) > 40  # a collision: one by one
    finally:
        for s in stores:
            await s.close()
    assert state(tmp_path / "batched") == state(tmp_path / "single")


async def test_a_run_with_a_bad_record_applies_the_others(tmp_path: Path) -> None:
    """A record whose bytes do not match its SHA-256 is refused alone, as one by one."""
    primary = await MailStore.open(tmp_path / "primary")
    src = await primary.account("acct-1")
    inbox = await src.mailbox("INBOX")
    for i in range(10):
        await src.append(inbox.id, message(f"m{i}"))
    items = await journal_of(src, B)
    await primary.close()
    replica = await MailStore.open(tmp_path / "replica")
    try:
        acct, _ = await replica.replica_account("acct-1", items[0][0], origin=A)
        rest = items[1:]
        bad = [i for i, (rec, _) in enumerate(rest) if isinstance(rec, AppendRecord)][4]
        rest[bad] = (rest[bad][0], b"Subject: other\r\n\r\nx\r\n")
        got = await acct.replication.apply_many(rest, origin=A, resolve=False)
        assert [exc is None for _, exc in got] == [i != bad for i in range(len(rest))]
        assert "SHA-256" in str(got[bad][1])
        snap = await acct.snapshot(inbox.id)
        assert len(snap.uids) == 9
    finally:
        await replica.close()
