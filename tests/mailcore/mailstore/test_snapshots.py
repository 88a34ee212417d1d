"""Snapshots kept per mailbox and brought up to date from the change log must equal a full
read of the index after any sequence of writes (seeded random operations)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from mailcore.mailstore import Account, Delivery, FlagOp, MailStore, snapshots
from mailcore.mailstore.layout import index_path
from mailcore.mailstore.model import Snapshot
from tests.mailcore.mailstore.conftest import message


def _full(path: Path, mailbox_id: int) -> Snapshot:
    conn = sqlite3.connect(path)
    try:
        conn.execute("BEGIN")
        return snapshots.snapshot(conn, mailbox_id, None)
    finally:
        conn.close()


async def _check(acct: Account, path: Path, mailbox_id: int) -> Snapshot:
    got = await acct.snapshot(mailbox_id)
    assert got == _full(path, mailbox_id)
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kept_snapshots_equal_full_reads_after_random_writes(
    store: MailStore, seed: int
) -> None:
    rng = random.Random(seed)
    acct = await store.account("snap")
    path = index_path(store.account_dir("snap"))
    boxes = [(await acct.mailbox(n)).id for n in ("INBOX", "Archive", "Trash")]
    flags = ["\\Seen", "\\Flagged", "\\Deleted", "$Work", "$Later"]
    n = 0
    for step in range(250):
        box = rng.choice(boxes)
        uids = (await acct.snapshot(box)).uids
        some = rng.sample(uids, min(len(uids), rng.randint(1, 4))) if uids else []
        op = rng.randrange(9)
        if op <= 2 or not uids:
            n += 1
            await acct.append(box, message(f"m{n}"), flags=rng.sample(flags, rng.randint(0, 2)))
        elif op == 3:
            n += 1
            await store.deliver([Delivery(f"k{n}", "snap", "inbox", message(f"d{n}"), 1.0)])
        elif op == 4:
            fop = rng.choice(list(FlagOp))
            await acct.store_flags(box, some, fop, rng.sample(flags, rng.randint(0, 3)))
        elif op == 5:
            await acct.expunge(box, some, force=rng.random() < 0.5)
        elif op == 6:
            dst = rng.choice([b for b in boxes if b != box])
            if rng.random() < 0.5:
                await acct.move(box, some, dst)
            else:
                await acct.copy(box, some, dst)
        elif op == 7 and step % 40 == 7:
            # mailbox changes: a new mailbox, one deleted, a subscription
            name = f"Box{step}"
            created = await acct.create_mailbox(name)
            boxes.append(created.id)
            if len(boxes) > 4:
                victim = boxes.pop(3)
                info = await acct.mailbox_by_id(victim)
                await acct.delete_mailbox(info.name)
            await acct.set_subscribed(name, rng.random() < 0.5)
        for b in rng.sample(boxes, min(2, len(boxes))):
            await _check(acct, path, b)
    for b in boxes:
        await _check(acct, path, b)
    assert acct._snapshots.full_reads < 250  # most snapshots came from the kept ones


async def test_pruned_change_log_or_long_replay_reads_afresh(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await store.account("prune")
    path = index_path(store.account_dir("prune"))
    inbox = (await acct.mailbox("INBOX")).id
    for i in range(5):
        await acct.append(inbox, message(f"m{i}"))
    await _check(acct, path, inbox)
    reads = acct._snapshots.full_reads
    await acct.store_flags(inbox, [2], FlagOp.ADD, ["\\Seen"])
    await acct.append(inbox, message("more"))
    await _check(acct, path, inbox)
    assert acct._snapshots.full_reads == reads  # replayed, not read again
    # the change log loses entries the kept snapshot would need
    await acct.store_flags(inbox, [3], FlagOp.ADD, ["\\Flagged"])
    await acct.expunge(inbox, [1], force=True)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM journal WHERE seq < (SELECT max(seq) FROM journal)")
    conn.commit()
    conn.close()
    # memory would still cover them (no rows to read): as if another process had written
    acct._core._recent.clear()
    snap = await _check(acct, path, inbox)
    assert snap.uids == [2, 3, 4, 5, 6] and acct._snapshots.full_reads == reads + 1
    # more changes than are worth replaying
    monkeypatch.setattr(snapshots, "MAX_REPLAY", 2)
    await acct.store_flags(inbox, [2, 3, 4], FlagOp.ADD, ["$Many"])
    await _check(acct, path, inbox)
    assert acct._snapshots.full_reads == reads + 2


async def test_returned_lists_are_the_callers_own(account: Account) -> None:
    inbox = (await account.mailbox("INBOX")).id
    await account.append(inbox, message("one"))
    first = await account.snapshot(inbox)
    first.uids.append(99)
    first.flags[0] = frozenset({"changed"})
    second = await account.snapshot(inbox)
    assert second.uids == [1] and second.flags == [frozenset()]
