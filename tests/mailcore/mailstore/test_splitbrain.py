"""Split brain in the engine: two real stores written while the link was cut, then their
journals exchanged (as the mirror ships them) in either order: both end identical, with
every message once, the collided ones under new UIDs above what clients saw."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import Account, MailStore, schema, splitbrain
from mailcore.mailstore.model import FlagOp
from mailcore.mailstore.records import AppendRecord, UidMoveRecord
from tests.mailcore.mailstore.conftest import message

A, B = "store-a", "store-b"  # store-a sorts first: it gives out the new UIDs


async def ship(
    src: Account, dst: Account, src_name: str, dst_name: str, limit: int, batched: bool = False
) -> int:
    """Up to ``limit`` records of ``src``'s journal applied on ``dst``; how many (1 when
    all of them came from ``dst``: the reader moved on all the same). ``batched``: as
    one write (replica_run.py), as the mirror's apply_batch does."""
    reader = f"mirror:{dst_name}"
    await src.replication.register_reader(reader, position=0)
    records, last = await src.replication.read_skipping(reader, dst_name, limit)
    items = []
    for rec in records:
        data = None
        if isinstance(rec, AppendRecord):
            data = src.replication.message_bytes(rec.file_id)
        items.append((rec, data))
    if batched:
        for _, exc in await dst.replication.apply_many(
            items, origin=src_name, resolve=dst_name < src_name
        ):
            if exc is not None:
                raise exc
    for rec, data in [] if batched else items:
        await dst.replication.apply_resolving(
            rec, data, origin=src_name, resolver=dst_name < src_name
        )
    if last:
        await src.replication.confirm(reader, last)
    return len(records) or int(last > 0)


@contextlib.asynccontextmanager
async def pair(tmp_path: Path, **options: Any) -> AsyncIterator[tuple[Account, Account]]:
    """One account on two stores: A (resolver) and B, its replica (deferring)."""
    sa = await MailStore.open(tmp_path / "a", **options)
    sb = await MailStore.open(tmp_path / "b", **options)
    try:
        yield await sa.account("acct-1"), await sb.account("acct-1", replica=True)
    finally:
        await sa.close()
        await sb.close()


async def heal(a: Account, b: Account, a_first: bool, step: int = 7, batched: bool = False) -> None:
    while True:
        if a_first:
            moved = await ship(a, b, A, B, step, batched) + await ship(b, a, B, A, step, batched)
        else:
            moved = await ship(b, a, B, A, step, batched) + await ship(a, b, A, B, step, batched)
        if not moved:
            return


async def contents(acct: Account) -> dict[str, list[tuple[int, str, list[str]]]]:
    out = {}
    for box in await acct.list_mailboxes():
        snap = await acct.snapshot(box.id)
        rows = await acct.fetch(box.id, snap.uids, parsed=False) if snap.uids else []
        listed = []
        for r in rows:
            with acct.open_message(r) as fh:
                listed.append((r.uid, hashlib.sha256(fh.read()).hexdigest(), sorted(r.flags)))
        out[f"{box.name}/{box.uidvalidity}"] = listed
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("a_first", [True, False])
async def test_split_brain_heals_without_loss(tmp_path: Path, a_first: bool, batched: bool) -> None:
    async with pair(tmp_path) as (a, b):
        inbox = await a.mailbox("INBOX")
        work = await a.create_mailbox("Work")
        for i in range(5):
            await a.append(inbox.id, message(f"pre{i}"))
        await a.append(work.id, message("work0"))
        await heal(a, b, a_first, batched=batched)
        assert await contents(a) == await contents(b)
        seen_next = {"a": (await a.status(inbox.id)).uidnext}
        seen_next["b"] = (await b.status(inbox.id)).uidnext
        validity = inbox.uidvalidity
        # --- the link is cut: both sides take mail and changes -------------------------
        e = [message(f"E{i}") for i in range(20)]
        f = [message(f"F{i}") for i in range(25)]
        e_uids = [(await a.append(inbox.id, m)).uid for m in e]
        f_uids = [(await b.append(inbox.id, m)).uid for m in f]
        assert e_uids[:20] == f_uids[:20]  # the same UIDs name different messages
        await a.store_flags(inbox.id, e_uids[:5], FlagOp.ADD, {"\\Seen"})
        await b.store_flags(inbox.id, f_uids[:5], FlagOp.ADD, {"\\Flagged"})
        pre = (await a.snapshot(inbox.id)).uids[:5]
        await a.store_flags(inbox.id, pre[:2], FlagOp.ADD, {"\\Answered"})
        await b.store_flags(inbox.id, pre[1:3], FlagOp.ADD, {"$Work"})
        await b.store_flags(inbox.id, pre[1:3], FlagOp.ADD, {"$Later"})  # newer on B
        await a.expunge(inbox.id, e_uids[5:8], force=True)
        await b.expunge(inbox.id, f_uids[3:6] + f_uids[22:23], force=True)
        await a.expunge(inbox.id, [pre[4]], force=True)
        await b.store_flags(inbox.id, [pre[4]], FlagOp.ADD, {"\\Seen"})  # expunge wins
        await a.rename_mailbox("Work", "Projects")
        await b.append(work.id, message("work-b"))
        await a.append(work.id, message("work-a"))
        # --- heal --------------------------------------------------------------------
        await heal(a, b, a_first, batched=batched)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        box = f"INBOX/{validity}"
        shas = [s for _, s, _ in got_a[box]]
        expunged = {sha(m) for m in e[5:8] + f[3:6] + f[22:23]}
        wanted = {sha(m) for m in e + f} - expunged
        assert wanted <= set(shas) and len(shas) == len(set(shas))  # every message once
        assert not expunged & set(shas)  # none expunged came back
        assert sha(message("pre4")) not in shas
        uids = [u for u, _, _ in got_a[box]]
        assert len(uids) == len(set(uids))
        new = {u for u, s, _ in got_a[box] if s in wanted}
        assert min(new) >= max(seen_next["a"], 25 + seen_next["b"])  # above all clients saw
        flags = {s: fl for _, s, fl in got_a[box]}
        assert flags[sha(e[0])] == ["\\Seen"] and flags[sha(f[0])] == ["\\Flagged"]
        assert flags[sha(message("pre2"))] == ["$Later", "$Work"]
        # B's later change on pre1 (two modseqs) wins over A's one: highest modseq wins
        assert flags[sha(message("pre1"))] == ["$Later", "$Work"]
        assert flags[sha(message("pre0"))] == ["\\Answered"]
        projects = next(k for k in got_a if k.startswith("Projects/"))
        assert {s for _, s, _ in got_a[projects]} == {
            sha(message(n)) for n in ("work0", "work-a", "work-b")
        }
        assert not any(k.startswith("Work/") for k in got_a)
        for acct in (a, b):
            status = await acct.status(inbox.id)
            assert status.uidvalidity == validity
        da = await a.replication.digest(inbox.id)
        db = await b.replication.digest(inbox.id)
        assert da.digest == db.digest and da.uidnext == db.uidnext


async def test_a_renumbered_message_deleted_before_it_lands_goes_on_both(tmp_path: Path) -> None:
    """The resolver renumbers the peer's message onto a UID the peer used too, and a user
    deletes it there before it ever lands on the peer: the peer's own copy goes too."""
    async with pair(tmp_path) as (a, b):
        inbox = await a.mailbox("INBOX")
        await a.append(inbox.id, message("pre"))
        await heal(a, b, True)
        await a.append(inbox.id, message("E0"))
        y, zs = message("Y"), [message(f"Z{i}") for i in range(3)]
        await b.append(inbox.id, y)
        for z in zs:
            await b.append(inbox.id, z)
        await ship(b, a, B, A, 2)  # Y and Z0 only: Y renumbered onto a UID B used for Z1
        moved = [u for u, s, _ in (await contents(a))[f"INBOX/{inbox.uidvalidity}"] if s == sha(y)]
        await a.expunge(inbox.id, moved, force=True)  # deleted before it reached B
        await heal(a, b, True)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        left = {s for _, s, _ in got_a[f"INBOX/{inbox.uidvalidity}"]}
        assert sha(y) not in left
        assert {sha(z) for z in zs} | {sha(message("E0")), sha(message("pre"))} == left


@pytest.mark.parametrize("a_first", [True, False])
async def test_a_message_moved_within_its_mailbox_while_cut_stays_on_both(
    tmp_path: Path, a_first: bool
) -> None:
    """The deferring side moves a message within its mailbox while cut (RFC 6851 MOVE
    onto the same mailbox: the same bytes under a new UID, the old one expunged), on UIDs
    the resolver used too. The resolver gives both UIDs' messages new ones; the deferring
    side matches each new copy to its own collided UID in order. Before, it matched by
    bytes alone: the copy of the expunged UID took the live one with it, and the copy of
    the live one was dropped as expunged: the message lived on the resolver only."""
    async with pair(tmp_path, fsync=False) as (a, b):
        inbox = await a.mailbox("INBOX")
        await a.append(inbox.id, message("pre"))
        await heal(a, b, True)
        for i in range(3):  # the link cut: A takes UIDs 2-4, B 2 and (moved) 3
            await a.append(inbox.id, message(f"E{i}"))
        moving = message("moved")
        uid = (await b.append(inbox.id, moving)).uid
        await b.store_flags(inbox.id, [uid], FlagOp.ADD, {"\\Seen"})
        await b.move(inbox.id, [uid], inbox.id)
        await heal(a, b, a_first)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        held = [(s, fl) for _, s, fl in got_a[f"INBOX/{inbox.uidvalidity}"]]
        assert [fl for s, fl in held if s == sha(moving)] == [["\\Seen"]]  # once, as moved
        assert len(held) == 5


@pytest.mark.parametrize("a_first", [True, False])
@pytest.mark.parametrize("step", [1, 50])
async def test_a_message_moved_out_and_back_while_cut_stays_on_both(
    tmp_path: Path, a_first: bool, step: int
) -> None:
    """The deferring side moves a message to another mailbox and back while cut (the
    same bytes under an expunged UID and a later live one, both colliding), and the
    resolver's copy of the expunged one lands on a UID the deferring side used too (so
    it is deferred there, and its expunge follows). That expunge took the live message
    with it, and the copy of the live one was then dropped as expunged: the message lived
    on the resolver only. Each copy goes with one collided UID, in order."""
    async with pair(tmp_path, fsync=False) as (a, b):
        inbox, other = await a.mailbox("INBOX"), await a.create_mailbox("Other")
        await a.append(inbox.id, message("pre"))
        await heal(a, b, True)
        for i in range(3):  # the link cut
            await a.append(inbox.id, message(f"E{i}"))
        moving = message("moved")
        uid = (await b.append(inbox.id, moving)).uid
        await b.move(inbox.id, [uid], other.id)
        for i in range(5):
            await b.append(inbox.id, message(f"F{i}"))
        await b.move(other.id, (await b.snapshot(other.id)).uids, inbox.id)
        await heal(a, b, a_first, step)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        held = [s for _, s, _ in got_a[f"INBOX/{inbox.uidvalidity}"]]
        assert held.count(sha(moving)) == 1 and len(held) == 10
        assert got_a[f"Other/{other.uidvalidity}"] == []


def test_a_deferring_apply_looks_up_collisions_not_the_whole_mailbox(tmp_path: Path) -> None:
    """After each append a deferring store looks for its own copies under collided UIDs:
    the plan must start from ``uid_moves`` (the collisions, usually none) and reach a
    message by its key, not walk every message of the mailbox for each applied record
    (what made a mirror's catch-up slow down as the mailbox grew: bench W6)."""
    conn = sqlite3.connect(tmp_path / "index.sqlite3")
    schema.create(conn)
    plan = conn.execute("EXPLAIN QUERY PLAN " + splitbrain._COPY_OF, (1, A, 7))
    steps = [row[3] for row in plan]
    assert steps == ["SEARCH uid_moves USING PRIMARY KEY (mailbox_id=?)"], steps
    # the one message is then read by its key (mailbox_id, uid): messages' primary key


@pytest.mark.parametrize("a_first", [True, False])
@pytest.mark.parametrize("step", [1, 3, 50])
async def test_a_copy_that_collides_again_does_not_take_the_live_message(
    tmp_path: Path, a_first: bool, step: int
) -> None:
    """The deferring side holds the same bytes twice in one mailbox while cut (COPY onto
    the same mailbox, RFC 3501 §6.4.7, and the first UID expunged later), both UIDs
    colliding. The resolver's new copy of the first lands on a UID the deferring side
    used too (deferred there, moved on by the resolver later), so the copy of the second
    arrives first. Matched by bytes and order, it was taken for the copy of the expunged
    one and dropped, and the live one went with the first copy's move: the message lived
    on the resolver only. The resolver's ``uid-move`` records name each copy's old UID."""
    async with pair(tmp_path, fsync=False) as (a, b):
        inbox = await a.mailbox("INBOX")
        await a.append(inbox.id, message("pre"))
        await heal(a, b, True)
        for i in range(3):  # the link cut: A takes UIDs 2-4
            await a.append(inbox.id, message(f"E{i}"))
        twice = message("twice")
        first = (await b.append(inbox.id, twice)).uid  # B: 2, its copy 3, F0-F3 4-7
        await b.copy(inbox.id, [first], inbox.id)
        for i in range(4):
            await b.append(inbox.id, message(f"F{i}"))
        await b.expunge(inbox.id, [first], force=True)
        await heal(a, b, a_first, step)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        held = [s for _, s, _ in got_a[f"INBOX/{inbox.uidvalidity}"]]
        assert held.count(sha(twice)) == 1 and len(held) == 9


@pytest.mark.parametrize("a_first", [True, False])
@pytest.mark.parametrize("step", [1, 50])
async def test_a_copy_landing_where_its_own_move_went_is_another_message(
    tmp_path: Path, a_first: bool, step: int
) -> None:
    """The deferring side moves a message within its mailbox while cut (RFC 6851, UID 2
    to 4), and the resolver's new copy of UID 2 lands on UID 4 too: equal bytes under
    one UID on both sides, but two messages (the copy of the expunged UID 2, and the
    moved one). Taken for one, the expunge of UID 2 followed to UID 4 took the moved
    message on both sides. The uid-move record tells the copy of UID 2 apart: the two
    collide as any two messages would."""
    async with pair(tmp_path, fsync=False) as (a, b):
        inbox = await a.mailbox("INBOX")
        await a.append(inbox.id, message("pre"))
        await heal(a, b, True)
        await a.append(inbox.id, message("E0"))  # the link cut: A takes UID 2
        moving = message("moved")
        uid = (await b.append(inbox.id, moving)).uid  # B: 2, F0 3, then 2 moved to 4
        await b.append(inbox.id, message("F0"))
        assert (await b.move(inbox.id, [uid], inbox.id)).mapping == [(2, 4)]
        await heal(a, b, a_first, step)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        held = [s for _, s, _ in got_a[f"INBOX/{inbox.uidvalidity}"]]
        assert held.count(sha(moving)) == 1 and len(held) == 4


async def test_the_resolver_names_each_copy_of_the_peers_message_before_its_append(
    tmp_path: Path,
) -> None:
    """A collision on the resolver: its journal tells the peer where its message went, a
    ``uid-move`` (the peer's UID, the new one) right before the append of the copy, and
    again when that copy moves on (its new UID collided on the peer too). A store that
    applies the record plainly (a follower) changes nothing."""
    sc = await MailStore.open(tmp_path / "c", fsync=False)
    async with pair(tmp_path, fsync=False) as (a, b):
        inbox = await a.mailbox("INBOX")
        await a.append(inbox.id, message("pre"))
        await heal(a, b, True)
        head = a.replication.head
        await a.append(inbox.id, message("E0"))  # the link cut: both take UID 2
        for i in range(4):  # B: 2-5; the copy of B's 2 goes to 4 first, then on
            await b.append(inbox.id, message(f"F{i}"))
        await ship(b, a, B, A, 1000)
        told = [r for r in await a.replication.read(head) if r.kind in ("uid-move", "append")]
        moves = [(r.uid, r.new_uid) for r in told if isinstance(r, UidMoveRecord)]
        assert moves[:2] == [(2, 4), (3, 6)]  # (A's E0 went to 3 first, then on: 5)
        assert (2, max(n for u, n in moves if u == 2)) in moves[2:]  # moved on again
        for i, r in enumerate(told):
            if isinstance(r, UidMoveRecord):
                after = told[i + 1]
                assert isinstance(after, AppendRecord) and after.uid == r.new_uid
        c = await sc.account("acct-1", replica=True)
        for r in told:
            if isinstance(r, UidMoveRecord):
                assert await c.replication.apply(r) is False
    await sc.close()
