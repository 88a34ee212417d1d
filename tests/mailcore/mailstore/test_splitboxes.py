"""Split brain on mailboxes, in the engine: two real stores change their mailboxes while
the link is cut, then their journals are exchanged (as the mirror ships them) in either
order. Both end identical, with one mailbox per name and no message lost or hidden."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailcore.mailstore import Account, MailStore
from mailcore.mailstore.errors import MailstoreError
from mailcore.mailstore.model import FlagOp
from mailcore.mailstore.records import AppendRecord
from mailcore.mailstore.splitboxes import PARKED
from tests.mailcore.mailstore.conftest import message
from tests.mailcore.mailstore.test_group_commit import _held
from tests.mailcore.mailstore.test_splitbrain import A, B, contents, heal, sha, ship


async def open_pair(tmp_path: Path) -> tuple[MailStore, MailStore, Account, Account]:
    sa, sb = await MailStore.open(tmp_path / "a"), await MailStore.open(tmp_path / "b")
    a = await sa.account("acct-1")
    b = await sb.account("acct-1", replica=True)
    return sa, sb, a, b


def box(got: dict[str, list[tuple[int, str, list[str]]]], name: str) -> tuple[int, list[str]]:
    """The one mailbox named ``name``: (UIDVALIDITY, SHA-256 of each message)."""
    (key,) = [k for k in got if k.rsplit("/", 1)[0] == name]
    return int(key.rsplit("/", 1)[1]), [s for _, s, _ in got[key]]


def settled(got: dict[str, list[tuple[int, str, list[str]]]]) -> None:
    """Nothing set aside is left, and no UID names two messages."""
    assert not any(PARKED in k for k in got), list(got)
    for listed in got.values():
        uids = [u for u, _, _ in listed]
        assert len(uids) == len(set(uids))


@pytest.mark.parametrize("a_first", [True, False])
async def test_a_mailbox_made_on_both_sides_is_merged(tmp_path: Path, a_first: bool) -> None:
    """ "Shared" made on both sides (other ids, other UIDVALIDITYs: the deferring side made
    "Other" first, which got the id of the resolver's "Shared"): one "Shared" holding both
    sides' mail under the resolver's UIDVALIDITY, "Other" kept under a new id."""
    sa, sb, a, b = await open_pair(tmp_path)
    try:
        inbox = await a.mailbox("INBOX")
        await a.append(inbox.id, message("pre"))
        await heal(a, b, a_first)
        # --- split ---------------------------------------------------------------------
        other = await b.create_mailbox("Other")
        for i in range(2):
            await b.append(other.id, message(f"O{i}"))
        shared_b = await b.create_mailbox("Shared")
        f = [message(f"F{i}") for i in range(4)]
        f_uids = [(await b.append(shared_b.id, m)).uid for m in f]
        await b.store_flags(shared_b.id, f_uids[:1], FlagOp.ADD, {"\\Seen"})
        await b.expunge(shared_b.id, f_uids[1:2], force=True)
        shared_a = await a.create_mailbox("Shared")
        assert shared_a.id == other.id  # one id, two mailboxes
        e = [message(f"E{i}") for i in range(3)]
        for m in e:
            await a.append(shared_a.id, m)
        # --- heal ----------------------------------------------------------------------
        await heal(a, b, a_first)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        settled(got_a)
        validity, shas = box(got_a, "Shared")
        assert validity == shared_a.uidvalidity  # the resolver's
        assert sorted(shas) == sorted(sha(m) for m in [*e, f[0], f[2], f[3]])
        flags = {s: fl for _, s, fl in next(v for k, v in got_a.items() if "Shared" in k)}
        assert flags[sha(f[0])] == ["\\Seen"]  # the peer's flag followed its message
        _, others = box(got_a, "Other")
        assert sorted(others) == sorted(sha(message(f"O{i}")) for i in range(2))
        boxes_a = {m.name: m.id for m in await a.list_mailboxes()}
        assert boxes_a == {m.name: m.id for m in await b.list_mailboxes()}
        assert boxes_a["Shared"] == shared_a.id and boxes_a["Other"] != other.id
        # the merged mailbox takes mail on both sides afterwards, under one UID each
        await b.append(boxes_a["Shared"], message("after-b"))
        await a.append(boxes_a["Shared"], message("after-a"))
        await heal(a, b, a_first)
        got_a = await contents(a)
        assert got_a == await contents(b)
        assert len(box(got_a, "Shared")[1]) == 8
    finally:
        await sa.close()
        await sb.close()


@pytest.mark.parametrize(("renamer", "a_first"), [("a", True), ("a", False), ("b", True)])
async def test_a_rename_onto_a_name_the_other_side_made(
    tmp_path: Path, renamer: str, a_first: bool
) -> None:
    """ "Work" renamed "Projects" on one side (and written on the other), "Projects" made
    and written on the other: one "Projects" holding all of it, no "Work"."""
    sa, sb, a, b = await open_pair(tmp_path)
    try:
        work = await a.create_mailbox("Work")
        for i in range(2):
            await a.append(work.id, message(f"work{i}"))
        await heal(a, b, a_first)
        renames, makes = (a, b) if renamer == "a" else (b, a)
        # --- split ---------------------------------------------------------------------
        await renames.rename_mailbox("Work", "Projects")
        await renames.append(work.id, message("renamed-side"))
        await makes.append(work.id, message("written-under-old-name"))
        projects = await makes.create_mailbox("Projects")
        for i in range(2):
            await makes.append(projects.id, message(f"P{i}"))
        # --- heal ----------------------------------------------------------------------
        await heal(a, b, a_first)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        settled(got_a)
        assert not any(k.startswith("Work/") for k in got_a)
        _, shas = box(got_a, "Projects")
        names = ["work0", "work1", "renamed-side", "written-under-old-name", "P0", "P1"]
        assert sorted(shas) == sorted(sha(message(n)) for n in names)
    finally:
        await sa.close()
        await sb.close()


@pytest.mark.parametrize(
    ("deleter", "a_first"), [("a", True), ("a", False), ("b", True), ("b", False)]
)
async def test_a_write_into_a_mailbox_the_other_side_deleted(
    tmp_path: Path, deleter: str, a_first: bool
) -> None:
    """ "Old" deleted on one side while the other delivers into it and flags what it had:
    the messages the deleting side knew go, the new ones survive in "Old" on both."""
    sa, sb, a, b = await open_pair(tmp_path)
    try:
        old = await a.create_mailbox("Old")
        pre = [(await a.append(old.id, message(f"pre{i}"))).uid for i in range(3)]
        await heal(a, b, a_first)
        deletes, writes = (a, b) if deleter == "a" else (b, a)
        # --- split ---------------------------------------------------------------------
        await deletes.delete_mailbox("Old")
        new = [message(f"N{i}") for i in range(3)]
        uids = [(await writes.append(old.id, m)).uid for m in new]
        await writes.store_flags(old.id, pre[:1] + uids[:1], FlagOp.ADD, {"\\Flagged"})
        await writes.expunge(old.id, uids[2:], force=True)  # deleted before the heal
        # --- heal ----------------------------------------------------------------------
        await heal(a, b, a_first)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        settled(got_a)
        validity, shas = box(got_a, "Old")
        assert sorted(shas) == sorted(sha(m) for m in new[:2])  # nothing of before, no N2
        flags = {s: fl for _, s, fl in next(v for k, v in got_a.items() if k.startswith("Old/"))}
        assert flags[sha(new[0])] == ["\\Flagged"]
        if deleter == "b":  # the resolver took the new mail: the mailbox lives on as it was
            assert validity == old.uidvalidity
    finally:
        await sa.close()
        await sb.close()


async def ship_grouped(
    src: Account, dst: Account, dst_store: MailStore, src_name: str, dst_name: str
) -> None:
    """Every record of ``src``'s journal not yet shipped applied on ``dst`` as one group
    commit, as a mirror's batch is (services/store/replica_batch.py): all queued behind
    the held writer thread, then run in one transaction, each in its own savepoint."""
    reader = f"mirror:{dst_name}"
    await src.replication.register_reader(reader, position=0)
    records, last = await src.replication.read_skipping(reader, dst_name, 1000)
    gate = await _held(dst_store, dst._core.id)
    applies = [
        asyncio.ensure_future(
            dst.replication.apply_resolving(
                rec,
                src.replication.message_bytes(rec.file_id)
                if isinstance(rec, AppendRecord)
                else None,
                origin=src_name,
                resolver=dst_name < src_name,
            )
        )
        for rec in records
    ]
    await asyncio.sleep(0.05)  # all queued behind the held thread
    gate.set()
    await asyncio.gather(*applies)
    await src.replication.confirm(reader, last)


async def test_a_parent_made_implicitly_survives_a_batch_applied_as_one_group(
    tmp_path: Path,
) -> None:
    """RFC 3501 §6.3.3: CREATE Z/Sub makes the superior name Z too. Both sides do it while
    cut, after the resolver made X (its Z gets the id the deferring side gave its Z, its
    Z/Sub the id of the deferring side's Z/Sub, which the deferring side deleted since).
    The resolver merges the peer's Z and Z/Sub into its own; the deferring side applies
    the resolver's records as the mirror sends them, one batch committed as one group:
    X (its Z set aside), Z, Z/Sub, then the verdicts. Each write of the group must see
    the journal records of the writes before it: the verdict on the deferring side's old
    Z/Sub id looked up who made that id, found only its own deleted Z/Sub (the resolver's
    Z, made in the same group, was not in the journal table yet), took the resolver's Z
    for its own mailbox and dropped it: Z lived on the resolver only (a two-store IMAP
    random run, seed 106 of an earlier session)."""
    sa = await MailStore.open(tmp_path / "a", fsync=False, uidvalidity_parity=0)
    sb = await MailStore.open(tmp_path / "b", fsync=False, uidvalidity_parity=1)
    try:
        a = await sa.account("acct-1")
        b = await sb.account("acct-1", replica=True)
        await heal(a, b, True)
        # --- split ---------------------------------------------------------------------
        await a.create_mailbox("X")
        await a.create_mailbox("Z/Sub")
        await b.create_mailbox("Z/Sub")
        await b.delete_mailbox("Z/Sub")  # Z stays
        # --- heal: the peer's records first, the resolver's back in one batch -----------
        await ship(b, a, B, A, 1000)
        await ship_grouped(a, b, sb, A, B)
        await heal(a, b, True)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        names = sorted(k.rsplit("/", 1)[0] for k in got_a)
        assert [n for n in names if n in ("X", "Z", "Z/Sub")] == ["X", "Z", "Z/Sub"]
        settled(got_a)
    finally:
        await sa.close()
        await sb.close()


async def test_a_set_aside_mailbox_follows_its_target_merged_on(tmp_path: Path) -> None:
    """The deferring side's mailbox "S" (renamed "T" since) took an id the resolver used
    for "P": set aside off the id; the resolver merges it into its own "S" and, once the
    deferring side sent its own create of "P" back, knows it only by the negated id. The
    deferring side then renames the resolver's "S" onto "R", a name the resolver just
    made: the resolver merges its "S" into "R", and must tell the deferring side that its
    set-aside mailbox now goes there too. It told only mailboxes known by their id: a
    message written into "T" afterwards landed in "R" on the resolver and stayed in "T"
    on the deferring side, which kept "T" (a two-store IMAP random run, seed 201)."""
    sa = await MailStore.open(tmp_path / "a", fsync=False, uidvalidity_parity=0)
    sb = await MailStore.open(tmp_path / "b", fsync=False, uidvalidity_parity=1)
    try:
        a = await sa.account("acct-1")
        b = await sb.account("acct-1", replica=True)
        await heal(a, b, True)
        # --- split ---------------------------------------------------------------------
        await a.create_mailbox("P")
        await a.create_mailbox("S")
        mine = await b.create_mailbox("S")
        await b.append(mine.id, message("m1"))
        await b.rename_mailbox("S", "T")
        # --- heal, with writes on the way ----------------------------------------------
        await ship(a, b, A, B, 1000)  # B's "T" set aside off the id the resolver's "P" has
        t = await b.mailbox("T")
        assert t.id < 0
        await b.append(t.id, message("m2"))
        await b.rename_mailbox("S", "R")
        await a.create_mailbox("R")
        await ship(b, a, B, A, 1000)  # "T" merged into "S", "S" into "R"
        await b.append(t.id, message("m3"))
        await heal(a, b, False, 1000)
        got_a, got_b = await contents(a), await contents(b)
        assert got_a == got_b
        settled(got_a)
        assert sorted(box(got_a, "R")[1]) == sorted(sha(message(m)) for m in ("m1", "m2", "m3"))
        assert not [k for k in got_a if k.startswith(("S/", "T/"))]
    finally:
        await sa.close()
        await sb.close()


@pytest.mark.parametrize("a_first", [True, False])
async def test_a_copy_within_a_mailbox_renamed_onto_the_other_sides_name(
    tmp_path: Path, a_first: bool
) -> None:
    """The deferring side takes "m" into "Work" (a UID the resolver used too: the
    resolver renumbers it, to 4), renames "Work" onto "Projects" (a name the resolver
    made: merged), then COPYs "m" within it, to UID 4 too, and expunges the first UID.
    The resolver took that copy's append for the renumbered "m" it holds at 4 (the same
    bytes, the same UID) and dropped it, and the expunge of the first UID then removed
    "m" from "Projects": lost on both sides. (The shape of a random run's seed 2.)"""
    sa = await MailStore.open(tmp_path / "a", fsync=False, uidvalidity_parity=0)
    sb = await MailStore.open(tmp_path / "b", fsync=False, uidvalidity_parity=1)
    try:
        a = await sa.account("acct-1")
        b = await sb.account("acct-1", replica=True)
        work = await a.create_mailbox("Work")
        await a.append(work.id, message("w0"))
        await heal(a, b, True)
        # --- split ---------------------------------------------------------------------
        await a.append(work.id, message("a1"))
        await a.create_mailbox("Projects")
        m = message("m")
        first = (await b.append(work.id, m)).uid
        await b.append(work.id, message("y"))
        await b.rename_mailbox("Work", "Projects")
        done = await b.copy(work.id, [first], work.id)
        await b.expunge(work.id, [first], force=True)
        assert done.mapping[0][1] == 4
        # --- heal ----------------------------------------------------------------------
        await heal(a, b, a_first)
        got_a = await contents(a)
        assert got_a == await contents(b)
        settled(got_a)
        _, shas = box(got_a, "Projects")
        assert sorted(shas) == sorted(sha(message(n)) for n in ("w0", "a1", "m", "y"))
    finally:
        await sa.close()
        await sb.close()


NAMES = ["X", "Y", "Work", "Projects", "Old", "Z/Sub"]


async def random_changes(
    acct: Account,
    tag: str,
    rng: random.Random,
    count: int,
    killed: set[str],
    added: set[str],
    moves: Moves | None = None,
    *,
    boxes_too: bool = True,
) -> None:
    """``count`` random changes of mailboxes and messages on one side; what they delete
    goes to ``killed``, what they add to ``added`` (by SHA-256). With ``moves``, also
    MOVE and COPY (:func:`move_or_copy`).
    ``boxes_too=False``: messages only (no mailbox created, renamed or deleted)."""
    for i in range(count):
        if moves is not None:
            await expunge_copied(acct, moves)
            if rng.random() < 0.3:
                await move_or_copy(acct, rng, moves)
                continue
        boxes = await acct.list_mailboxes()
        others = [m for m in boxes if m.name != "INBOX"]
        roll = rng.random()
        if not boxes_too:
            roll = 0.30 + 0.70 * roll
        try:
            if roll < 0.12:
                await acct.create_mailbox(rng.choice(NAMES))
            elif roll < 0.22 and others:
                await acct.rename_mailbox(rng.choice(others).name, rng.choice(NAMES))
            elif roll < 0.30 and others:
                gone = rng.choice(others)
                killed.update(s for _, s, _ in await listing(acct, gone.id))
                await acct.delete_mailbox(gone.name)
            elif roll < 0.75:
                data = message(f"{tag}{i}")
                await acct.append(rng.choice(boxes).id, data)
                added.add(sha(data))
            else:
                box_id = rng.choice(boxes).id
                held = await listing(acct, box_id)
                if not held:
                    continue
                uid, digest, _ = rng.choice(held)
                if roll < 0.88:
                    await acct.store_flags(
                        box_id, [uid], FlagOp.ADD, {rng.choice(["\\Seen", "$X"])}
                    )
                else:
                    killed.add(digest)
                    await acct.expunge(box_id, [uid], force=True)
        except MailstoreError:
            pass  # e.g. a name in use: the change is not made, as for a client


@dataclass
class Moves:
    """One side's MOVEs and COPYs (:func:`move_or_copy`): the SHA-256 of each message
    moved or copied, and the COPYs whose first UID the side's next change expunges."""

    shas: set[str] = field(default_factory=set)
    pending: list[tuple[int, int, str]] = field(default_factory=list)  # mailbox, UID, SHA


async def move_or_copy(acct: Account, rng: random.Random, moves: Moves) -> None:
    """A random message MOVEd onto its own mailbox (RFC 6851: the same bytes under a new
    UID, the old one expunged), COPYed onto its own mailbox (RFC 3501 §6.4.7; the first
    UID is expunged by the side's next change: :func:`expunge_copied`), or MOVEd to a
    random mailbox (its own too: out, and later back)."""
    boxes = await acct.list_mailboxes()
    src = rng.choice(boxes)
    held = await listing(acct, src.id)
    if not held:
        return
    uid, digest, _ = rng.choice(held)
    roll = rng.random()
    try:
        if roll < 0.4:
            await acct.move(src.id, [uid], src.id)
        elif roll < 0.7:
            await acct.copy(src.id, [uid], src.id)
            moves.pending.append((src.id, uid, digest))
        else:
            await acct.move(src.id, [uid], rng.choice(boxes).id)
    except MailstoreError:
        return
    moves.shas.add(digest)


async def expunge_copied(acct: Account, moves: Moves) -> None:
    """The first UID of each COPY onto its own mailbox expunged (when it still holds that
    message here: the peer's changes may have moved or removed it meanwhile)."""
    for box_id, uid, digest in moves.pending:
        with contextlib.suppress(MailstoreError):
            if any(u == uid and s == digest for u, s, _ in await listing(acct, box_id)):
                await acct.expunge(box_id, [uid], force=True)
    moves.pending.clear()


async def listing(acct: Account, box_id: int) -> list[tuple[int, str, list[str]]]:
    snap = await acct.snapshot(box_id)
    rows = await acct.fetch(box_id, snap.uids, parsed=False) if snap.uids else []
    out = []
    for r in rows:
        with acct.open_message(r) as fh:
            out.append((r.uid, sha(fh.read()), sorted(r.flags)))
    return out


@pytest.mark.parametrize("seed", range(10))
async def test_random_changes_on_both_sides_heal_without_loss(tmp_path: Path, seed: int) -> None:
    """30 random changes of mailboxes (create, rename, delete onto the same few names)
    and messages on each side while cut, healed in batches of a random size: both sides
    equal, nothing set aside left, every message neither side deleted there exactly
    once, none that either deleted."""
    rng = random.Random(seed)
    sa, sb, a, b = await open_pair(tmp_path)
    try:
        for name in ("Work", "Old"):
            mb = await a.create_mailbox(name)
            for i in range(3):
                await a.append(mb.id, message(f"pre-{name}{i}"))
        step = rng.choice([1, 2, 3, 5, 8, 50])
        await heal(a, b, True, step)
        before = {s for v in (await contents(a)).values() for _, s, _ in v}
        killed: set[str] = set()
        added: set[str] = set()
        await random_changes(a, f"a{seed}-", rng, 30, killed, added)
        await random_changes(b, f"b{seed}-", rng, 30, killed, added)
        await heal(a, b, rng.random() < 0.5, step)
        got_a = await contents(a)
        assert got_a == await contents(b)
        settled(got_a)
        held = [s for v in got_a.values() for _, s, _ in v]
        assert sorted(held) == sorted((before | added) - killed)
    finally:
        await sa.close()
        await sb.close()


@pytest.mark.parametrize("seed", [4, 10, 30, 38, 41])
async def test_random_changes_while_the_settlement_runs(tmp_path: Path, seed: int) -> None:
    """As above, then the heal runs with the link up and both sides keep changing the
    same mailboxes meanwhile (create, rename, delete, append, flags, expunge), each side's
    journal shipped to the other in batches of 1-6 between the changes: both end equal,
    nothing set aside left, every message neither side deleted exactly once, none that
    either deleted. These seeds ended unequal before a settlement under way followed
    mailboxes deleted or ids taken over meanwhile (a mailbox left set aside, a message
    filed in the wrong mailbox, a deleted mailbox made again empty, a refused record)."""
    rng = random.Random(seed)
    sa, sb = (
        await MailStore.open(tmp_path / "a", fsync=False),
        await MailStore.open(tmp_path / "b", fsync=False),
    )
    a = await sa.account("acct-1")
    b = await sb.account("acct-1", replica=True)
    try:
        for name in ("Work", "Old"):
            mb = await a.create_mailbox(name)
            for i in range(3):
                await a.append(mb.id, message(f"pre-{name}{i}"))
        await heal(a, b, True)
        before = {s for v in (await contents(a)).values() for _, s, _ in v}
        killed: set[str] = set()
        added: set[str] = set()
        for i in range(20):  # the link cut
            await random_changes(a, f"a{seed}-{i}-", rng, 1, killed, added)
            await random_changes(b, f"b{seed}-{i}-", rng, 1, killed, added)
        changes = 0
        while changes < 150:  # the link up: the settlement runs, both sides go on
            roll, step = rng.random(), rng.randint(1, 6)
            if roll < 0.25:
                await ship(a, b, A, B, step)
            elif roll < 0.5:
                await ship(b, a, B, A, step)
            else:
                changes += 1
                side, tag = (a, "a") if rng.random() < 0.5 else (b, "b")
                await random_changes(side, f"{tag}{seed}-live{changes}-", rng, 1, killed, added)
        await heal(a, b, rng.random() < 0.5, rng.randint(1, 6))
        got_a = await contents(a)
        assert got_a == await contents(b), f"seed {seed}"
        settled(got_a)
        held = [s for v in got_a.values() for _, s, _ in v]
        assert sorted(held) == sorted((before | added) - killed), f"seed {seed}"
    finally:
        await sa.close()
        await sb.close()


@pytest.mark.parametrize("seed", [5, 7, 10, 18])
async def test_random_changes_shipped_in_groups_heal_without_loss(
    tmp_path: Path, seed: int
) -> None:
    """As above, on a pair with roles (master's UIDVALIDITYs even, slave's odd), and with
    half of the shipments applied as the mirror applies a batch: one group commit. These
    seeds ended unequal or with a record refused (``no mailbox with id …``: kept in
    MIRROR_CONFLICTS by a mirror) before each write of a group saw the journal records of
    the writes before it (7 of seeds 0-39: these four among them; 0 of 40 after)."""
    await groups_run(tmp_path, seed, moves=False)


MOVE_SEEDS = [int(s) for s in os.environ.get("POSTERN_RANDOM_MOVE_SEEDS", "").split(",") if s]


@pytest.mark.parametrize("seed", MOVE_SEEDS or [0, 5, 7])
async def test_random_moves_and_copies_shipped_in_groups_heal_without_loss(
    tmp_path: Path, seed: int
) -> None:
    """As above, messages only (no mailbox created, renamed or deleted), with MOVE onto
    the same mailbox, COPY onto it (the first UID expunged by the side's next change) and
    MOVE out and back among the changes: the same bytes twice in a mailbox, both UIDs
    colliding. Messages were lost in 17 of seeds 0-39 before the resolver named each copy
    it renumbered (``uid-move``), 0 after; seed 5 also needed equal bytes under one UID
    told apart when one is the copy of another UID. (``POSTERN_RANDOM_MOVE_SEEDS=1,2,…``:
    other seeds.)"""
    await groups_run(tmp_path, seed, moves=True, boxes_too=False)


BOX_MOVE_SEEDS = [
    int(s) for s in os.environ.get("POSTERN_RANDOM_BOX_MOVE_SEEDS", "").split(",") if s
]


@pytest.mark.parametrize("seed", BOX_MOVE_SEEDS or [2, 6, 0])
async def test_random_moves_copies_and_mailbox_changes_heal_without_loss(
    tmp_path: Path, seed: int
) -> None:
    """As above, with mailboxes created, renamed and deleted too: the same bytes twice in
    a mailbox that the settlement of mailboxes merges (made or renamed on both sides under
    one name, a message copied or moved within it while cut). Seeds 2 and 6 lost a message
    (of 0-39) while the deferring side drained its set-aside mailbox by matching the
    resolver's merged copies by bytes. (``POSTERN_RANDOM_BOX_MOVE_SEEDS=1,2,…``: other
    seeds.)"""
    await groups_run(tmp_path, seed, moves=True, boxes_too=True)


async def groups_run(tmp_path: Path, seed: int, *, moves: bool, boxes_too: bool = True) -> None:
    rng = random.Random(seed)
    moves_a, moves_b = (Moves(), Moves()) if moves else (None, None)
    sa = await MailStore.open(tmp_path / "a", fsync=False, uidvalidity_parity=0)
    sb = await MailStore.open(tmp_path / "b", fsync=False, uidvalidity_parity=1)
    a = await sa.account("acct-1")
    b = await sb.account("acct-1", replica=True)
    try:
        await heal(a, b, True)
        before = {s for v in (await contents(a)).values() for _, s, _ in v}
        killed: set[str] = set()
        added: set[str] = set()
        for i in range(20):  # the link cut
            await random_changes(
                a, f"a{seed}-{i}-", rng, 1, killed, added, moves_a, boxes_too=boxes_too
            )
            await random_changes(
                b, f"b{seed}-{i}-", rng, 1, killed, added, moves_b, boxes_too=boxes_too
            )
        changes = 0
        while changes < 150:  # the link up: the settlement runs, both sides go on
            roll, step = rng.random(), rng.randint(1, 6)
            if roll < 0.5:
                src, dst, dst_store, names = (
                    (a, b, sb, (A, B)) if roll < 0.25 else (b, a, sa, (B, A))
                )
                if rng.random() < 0.5:
                    await ship_grouped(src, dst, dst_store, *names)
                else:
                    await ship(src, dst, *names, step)
            else:
                changes += 1
                side, tag, made = (a, "a", moves_a) if rng.random() < 0.5 else (b, "b", moves_b)
                await random_changes(
                    side,
                    f"{tag}{seed}-live{changes}-",
                    rng,
                    1,
                    killed,
                    added,
                    made,
                    boxes_too=boxes_too,
                )
        if moves_a is not None and moves_b is not None:  # the last COPYs' first UIDs go
            await expunge_copied(a, moves_a)
            await expunge_copied(b, moves_b)
        await heal(a, b, rng.random() < 0.5, rng.randint(1, 6))
        got_a = await contents(a)
        assert got_a == await contents(b), f"seed {seed}"
        settled(got_a)
        held = [s for v in got_a.values() for _, s, _ in v]
        if not moves:
            assert sorted(held) == sorted((before | added) - killed), f"seed {seed}"
            return
        # a message expunged (or its mailbox deleted) on one side and moved on the other
        # lives on under the moved UID; moved on both sides, it lives on twice (two
        # messages now); every other message is held exactly once, and none is lost
        moved = moves_a.shas | moves_b.shas if moves_a and moves_b else set()
        lost = [s for s in (before | added) - killed if not held.count(s)]
        assert not lost, f"seed {seed}: {[s[:8] for s in lost]} lost"
        twins = [s for s in (before | added) - moved if held.count(s) > 1]
        assert not twins, f"seed {seed}: {[s[:8] for s in twins]} twice"
        assert set(held) <= before | added, f"seed {seed}"
    finally:
        await sa.close()
        await sb.close()


async def test_the_two_sides_of_a_pair_never_make_the_same_uidvalidity(tmp_path: Path) -> None:
    """UIDVALIDITY follows the clock; in a split both sides create mailboxes in the same
    second, and the resolver makes mailboxes for the peer's ids: the master's values are
    even and the slave's odd (``uidvalidity_parity``), so no two are the same."""
    sa = await MailStore.open(tmp_path / "a", fsync=False, uidvalidity_parity=0)
    sb = await MailStore.open(tmp_path / "b", fsync=False, uidvalidity_parity=1)
    try:
        a, b = await sa.account("acct-1"), await sb.account("acct-1")
        made_a = [(await a.create_mailbox(f"A{i}")).uidvalidity for i in range(4)]
        made_b = [(await b.create_mailbox(f"B{i}")).uidvalidity for i in range(4)]
        assert not set(made_a) & set(made_b)
        assert {v % 2 for v in made_a} == {0} and {v % 2 for v in made_b} == {1}
        assert made_a == sorted(set(made_a)) and made_b == sorted(set(made_b))
    finally:
        await sa.close()
        await sb.close()
