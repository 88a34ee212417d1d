"""Replica apply (issue 11): replaying an account's journal from zero into an empty store
yields an identical store; each record applied twice changes nothing; a UID taken by a
different message is a typed conflict."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import (
    Account,
    Delivery,
    FlagOp,
    MailboxExists,
    MailboxNotAllowed,
    MailStore,
    NoSuchMailbox,
    Quota,
    QuotaExceeded,
    TooManyKeywords,
)
from mailcore.mailstore.digest import recompute
from mailcore.mailstore.errors import ReplicaConflict
from mailcore.mailstore.layout import index_path
from mailcore.mailstore.records import AppendRecord, FlagsRecord
from tests.mailcore.mailstore.conftest import message

FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$a", "$b", "Work"]


async def _random_ops(store: MailStore, acct: Account, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    names = ["A", "A/B", "C", "D/E/F", "G"]
    done = 0
    while done < n:
        boxes = await acct.list_mailboxes()
        box = rnd.choice(boxes)
        snap = await acct.snapshot(box.id)
        uids = snap.uids
        pick = rnd.random()
        try:
            if pick < 0.30:
                flags = rnd.sample(FLAGS, rnd.randint(0, 3))
                body = rnd.randbytes(rnd.randint(0, 300)).hex()
                date = rnd.randint(10**9, 2 * 10**9)
                quota = Quota(10**9, 0) if rnd.random() < 0.05 else Quota()
                await acct.append(
                    box.id, message(f"s{done}", body), flags=flags, internal_date=date, quota=quota
                )
            elif pick < 0.40:
                key = f"k{rnd.randint(0, 400)}"  # repeats: duplicates write nothing
                role = rnd.choice(["inbox", "junk"])
                d = Delivery(
                    key, acct.id, role, message(key, key * 3), float(rnd.randint(0, 10**9))
                )
                await store.deliver([d])
            elif pick < 0.62 and uids:
                chosen = rnd.sample(uids, min(len(uids), rnd.randint(1, 4)))
                op = rnd.choice(list(FlagOp))
                await acct.store_flags(box.id, chosen, op, rnd.sample(FLAGS, rnd.randint(0, 3)))
            elif pick < 0.70 and uids:
                await acct.expunge(
                    box.id, rnd.sample(uids, min(len(uids), 3)) if rnd.random() < 0.5 else None
                )
            elif pick < 0.74 and uids:
                await acct.expunge(box.id, rnd.sample(uids, 1), force=True)
            elif pick < 0.80 and uids:
                dst = rnd.choice(boxes)
                chosen = rnd.sample(uids, min(len(uids), rnd.randint(1, 5)))
                if rnd.random() < 0.5:
                    await acct.copy(box.id, chosen, dst.id)
                else:
                    await acct.move(box.id, chosen, dst.id)
            elif pick < 0.85:
                await acct.create_mailbox(rnd.choice(names))
            elif pick < 0.88:
                victim = rnd.choice([b for b in boxes if b.name != "INBOX"])
                await acct.delete_mailbox(victim.name)
            elif pick < 0.91:
                src = rnd.choice(boxes)
                await acct.rename_mailbox(src.name, rnd.choice(names) + str(rnd.randint(0, 9)))
            elif pick < 0.96:
                await acct.set_subscribed(rnd.choice([*names, "Nowhere"]), rnd.random() < 0.6)
            elif pick < 0.97:
                await acct.replication.raise_uidnext(box.id, snap.uidnext + rnd.randint(1, 3))
            elif pick < 0.98 and rnd.random() < 0.2:
                await acct.rename_mailbox("INBOX", f"Old{done}")
            else:
                await acct.claim_recent(box.id)
        except (MailboxExists, MailboxNotAllowed, NoSuchMailbox, QuotaExceeded, TooManyKeywords):
            pass
        done += 1


def _state(path: Path) -> dict[str, Any]:
    """Everything that must be equal on both stores, with the message bytes."""
    conn = sqlite3.connect(index_path(path))
    try:
        out: dict[str, Any] = {}
        out["state"] = conn.execute(
            "SELECT modseq, last_uidvalidity, last_mailbox_id, usage_bytes, usage_messages,"
            " quota_bytes, quota_messages FROM state"
        ).fetchall()
        out["mailboxes"] = conn.execute(
            "SELECT id, name, special_use, uidvalidity, uidnext, highestmodseq, digest"
            " FROM mailboxes ORDER BY id"
        ).fetchall()
        out["subscriptions"] = conn.execute("SELECT name FROM subscriptions ORDER BY 1").fetchall()
        out["expunged"] = conn.execute("SELECT * FROM expunged ORDER BY 1, 2").fetchall()
        rows = conn.execute(
            "SELECT m.mailbox_id, m.uid, m.modseq, m.flags, m.internal_date, m.size, m.sha256,"
            " m.s_subject, m.file_id FROM messages m ORDER BY 1, 2"
        ).fetchall()
        out["digests"] = [recompute(conn, r[0]) for r in out["mailboxes"]]
    finally:
        conn.close()
    out["messages"] = [
        (
            *r[:-1],
            hashlib.sha256(
                (path / "msgs" / f"{r[-1] // 4096:06x}" / str(r[-1])).read_bytes()
            ).digest(),
        )
        for r in rows
    ]
    return out


async def test_replaying_the_journal_from_zero_gives_an_identical_store(tmp_path: Path) -> None:
    src_store = await MailStore.open(tmp_path / "a", fsync=False)
    dst_store = await MailStore.open(tmp_path / "b", fsync=False)
    try:
        src = await src_store.account("acct")
        await _random_ops(src_store, src, 5000, seed=11)
        dst = await dst_store.account("acct", replica=True)
        assert await dst.list_mailboxes() == []
        after = 0
        applied = 0
        while batch := await src.replication.read(after, limit=500):
            for rec in batch:
                data = None
                if isinstance(rec, AppendRecord):
                    data = src.replication.message_bytes(rec.file_id)
                # False only where the peer's bytes are gone: the message was expunged
                # there since, and changes to it no longer matter
                applied += await dst.replication.apply(rec, data)
                head = dst.change_seq
                # the same record again: nothing changes, nothing is journalled
                assert await dst.replication.apply(rec, data) is False, rec
                assert dst.change_seq == head
            after = batch[-1].seq
        assert after == src.change_seq and applied > 3000
        boxes = await src.list_mailboxes()
        assert await dst.list_mailboxes() == boxes
        for box in boxes:
            assert await dst.replication.digest(box.id) == await src.replication.digest(box.id)
            a, b = await src.snapshot(box.id), await dst.snapshot(box.id)
            assert (a.uids, a.modseqs, a.flags, a.uidvalidity, a.uidnext, a.highestmodseq) == (
                b.uids,
                b.modseqs,
                b.flags,
                b.uidvalidity,
                b.uidnext,
                b.highestmodseq,
            )
        await src_store.close()
        await dst_store.close()
        one, two = (
            _state(tmp_path / "a" / "accounts" / "acct"),
            _state(tmp_path / "b" / "accounts" / "acct"),
        )
        assert len(one["messages"]) > 100
        for key in one:
            assert one[key] == two[key], key
    finally:
        await src_store.close()
        await dst_store.close()


async def test_uid_taken_by_another_message_is_a_conflict(store: MailStore) -> None:
    src = await store.account("src")
    dst = await store.account("dst", replica=True)
    for rec in await src.replication.read(0):
        await dst.replication.apply(rec)
    inbox = (await src.mailbox("INBOX")).id
    start = src.change_seq
    await src.append(inbox, message("one"))
    (rec,) = await src.replication.read(start)
    assert isinstance(rec, AppendRecord)
    other = message("two")
    forged = AppendRecord(
        rec.seq,
        rec.at,
        rec.mailbox_id,
        rec.uidvalidity,
        rec.uid,
        rec.modseq,
        rec.internal_date,
        len(other),
        hashlib.sha256(other).hexdigest(),
        0,
        frozenset(),
    )
    assert await dst.replication.apply(forged, other) is True
    head = dst.change_seq
    with pytest.raises(ReplicaConflict) as caught:
        await dst.replication.apply(rec, src.replication.message_bytes(rec.file_id))
    assert (caught.value.mailbox_id, caught.value.uid) == (inbox, rec.uid)
    assert dst.change_seq == head  # nothing applied
    with pytest.raises(ReplicaConflict):  # bytes that are not the record's
        await dst.replication.apply(
            AppendRecord(
                *[getattr(rec, f) for f in ("seq", "at", "mailbox_id", "uidvalidity")],
                9,
                rec.modseq,
                0.0,
                3,
                rec.sha256,
                0,
                frozenset(),
            ),
            b"abc",
        )
    wrong_validity = AppendRecord(
        rec.seq,
        rec.at,
        rec.mailbox_id,
        rec.uidvalidity + 1,
        10,
        rec.modseq,
        0.0,
        len(other),
        hashlib.sha256(other).hexdigest(),
        0,
        frozenset(),
    )
    with pytest.raises(ReplicaConflict):
        await dst.replication.apply(wrong_validity, other)


async def test_replica_keeps_the_newer_flags(store: MailStore) -> None:
    src = await store.account("src")
    dst = await store.account("dst", replica=True)
    inbox = (await src.mailbox("INBOX")).id
    await src.append(inbox, message("m"))
    await src.store_flags(inbox, [1], FlagOp.ADD, ["\\Seen"])
    await src.store_flags(inbox, [1], FlagOp.ADD, ["$later"])
    records = await src.replication.read(0)
    first, second = [r for r in records if isinstance(r, FlagsRecord)]
    for rec in records:
        if rec is first:
            continue
        data = src.replication.message_bytes(rec.file_id) if isinstance(rec, AppendRecord) else None
        await dst.replication.apply(rec, data)
    assert await dst.replication.apply(first) is False  # an older change arriving late
    assert (await dst.snapshot(inbox)).flags == [second.flags]
    assert (await dst.replication.digest(inbox)).digest == (
        await src.replication.digest(inbox)
    ).digest


async def test_replica_accounts_are_created_with_their_inbox_or_not_at_all(
    store: MailStore,
) -> None:
    src = await store.account("src")
    first, *rest = await src.replication.read(0)
    assert await store.existing("dst") is None
    assert not store.account_dir("dst").exists()
    # an index whose creating transaction never committed (a crash) holds no account
    store.account_dir("dst").mkdir(parents=True)
    sqlite3.connect(index_path(store.account_dir("dst"))).close()
    assert await store.existing("dst") is None
    with pytest.raises(ReplicaConflict, match="not on this store"):
        await store.replica_account("dst", rest[0], origin="peer")
    assert await store.existing("dst") is None
    dst, applied = await store.replica_account("dst", first, origin="peer")
    assert applied and (await dst.mailbox("INBOX")).id == (await src.mailbox("INBOX")).id
    assert await store.existing("dst") is dst
    again, applied = await store.replica_account("dst", first, origin="peer")
    assert again is dst and not applied
    for rec in rest:
        assert await dst.replication.apply(rec, origin="peer")
    await dst.replication.register_reader("mirror:peer", position=0)
    assert (await dst.replication.read_skipping("mirror:peer", "peer"))[0] == []


async def test_an_account_created_on_both_stores_has_the_same_default_mailboxes(
    tmp_path: Path,
) -> None:
    """A login on the slave before the master's first record arrived creates the account
    there too: both stores' default mailboxes are the same (ids, names, UIDVALIDITY), so
    each side's creation records are no-ops on the other — before, the UIDVALIDITY came
    from the clock and every default mailbox was a conflict for the split-brain merge."""
    a = await MailStore.open(tmp_path / "a", paired=True)
    b = await MailStore.open(tmp_path / "b", paired=True)
    try:
        on_a = await a.account("acct-pat")
        first = int(time.time())
        while int(time.time()) == first:  # a clock-based UIDVALIDITY would differ now
            await asyncio.sleep(0.05)
        on_b = await b.account("acct-pat")

        def listing(boxes: list[Any]) -> list[tuple[int, str, int, bool]]:
            return [(x.id, x.name, x.uidvalidity, x.subscribed) for x in boxes]

        assert listing(await on_a.list_mailboxes()) == listing(await on_b.list_mailboxes())
        for src, dst in ((on_a, on_b), (on_b, on_a)):
            for rec in await src.replication.read(0):
                assert await dst.replication.apply(rec, origin="peer") is False, rec
        # a mailbox made later takes a greater UIDVALIDITY (RFC 3501 §2.3.1.1)
        later = await on_a.create_mailbox("Later")
        assert later.uidvalidity > max(x.uidvalidity for x in await on_b.list_mailboxes())
    finally:
        await a.close()
        await b.close()


async def test_a_store_alone_makes_default_mailboxes_with_clock_uidvalidity(
    tmp_path: Path,
) -> None:
    """Not paired: a store that lost its disk and makes an account again must give its
    mailboxes greater UIDVALIDITY values than clients cached (RFC 3501 §2.3.1.1), which the
    account id alone cannot; a paired store gets its mail back from the peer instead."""
    store = await MailStore.open(tmp_path / "alone")
    try:
        before = int(time.time())
        boxes = await (await store.account("acct-pat")).list_mailboxes()
        assert all(x.uidvalidity >= before for x in boxes)
        gone = await MailStore.open(tmp_path / "alone-again")  # the disk lost, made again
        try:
            while int(time.time()) <= max(x.uidvalidity for x in boxes):  # (a few seconds)
                await asyncio.sleep(0.1)
            again = await (await gone.account("acct-pat")).list_mailboxes()
            old = {x.name: x.uidvalidity for x in boxes}
            assert all(x.uidvalidity > old[x.name] for x in again)
        finally:
            await gone.close()
    finally:
        await store.close()
