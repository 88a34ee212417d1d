"""SELECT and STATUS without a reader thread (issue 20): a snapshot kept in memory and
brought up to date from the changes in memory, and the counts of a small mailbox, are
read on the event loop's own connection; anything that needs rows (no kept snapshot,
changes another process committed) goes to the reader pool. Same answers either way."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import Account, FlagOp, MailStore, reads
from tests.mailcore.mailstore.conftest import message


def _count_pool(account: Account, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pooled = [0]
    real_read = account._read

    async def counting(fn: Any) -> Any:
        pooled[0] += 1
        return await real_read(fn)

    monkeypatch.setattr(account, "_read", counting)
    return pooled


async def _full(account: Account, mailbox_id: int) -> Any:
    def run() -> Any:
        with account._core.reader() as c:
            return reads.snapshot(c, mailbox_id)  # no cache: every row read

    return await asyncio.to_thread(run)


async def test_kept_snapshots_and_small_counts_are_read_on_the_loop(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = (await account.mailbox("INBOX")).id
    for i in range(5):
        await account.append(inbox, message(f"m{i}"))
    pooled = _count_pool(account, monkeypatch)
    first = await account.snapshot(inbox)
    assert pooled[0] == 1  # nothing kept yet: a reader thread reads the rows
    # others' writes since: appends, flag and keyword changes, an expunge
    new = await account.append(inbox, message("new"), flags=["$Work"])
    await account.store_flags(inbox, [1, 2], FlagOp.ADD, ["\\Seen", "\\Deleted"])
    await account.expunge(inbox, [1])
    snap = await account.snapshot(inbox)
    status = await account.status(inbox)
    assert pooled[0] == 1  # both on the loop
    full = await _full(account, inbox)
    assert (snap.uids, snap.flags, snap.modseqs) == (full.uids, full.flags, full.modseqs)
    assert snap.change_seq == full.change_seq > first.change_seq
    assert snap.uids == [2, 3, 4, 5, new.uid]
    assert (status.messages, status.unseen, status.deleted) == (5, 4, 1)
    assert status.uidnext == new.uid + 1


async def test_changes_of_another_process_are_read_in_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shared"
    one = await MailStore.open(root, exclusive=False)
    two = await MailStore.open(root, exclusive=False)
    try:
        a = await one.account("acct")
        b = await two.account("acct")
        inbox = (await a.mailbox("INBOX")).id
        await a.append(inbox, message("first"))
        await a.snapshot(inbox)  # kept in process one
        await a.snapshot(inbox)  # warm
        await b.append(inbox, message("theirs"))  # not in process one's memory
        await b.store_flags(inbox, [1], FlagOp.ADD, ["\\Flagged"])
        a._advanced(b.change_seq)  # as its notice would say (notify.py)
        pooled = _count_pool(a, monkeypatch)
        snap = await a.snapshot(inbox)
        assert pooled[0] == 1  # the journal's rows: read on a reader thread
        assert snap.uids == [1, 2]
        assert "\\Flagged" in snap.flags[0]
    finally:
        await two.close()
        await one.close()


async def test_snapshots_on_the_loop_under_concurrent_writes_never_lose_a_message(
    account: Account,
) -> None:
    """Appends, flag changes and expunges race snapshots taken on the loop: every
    snapshot lists UIDs ascending without repeats, each one at least as new as the
    previous, and the last equals a full read."""
    inbox = (await account.mailbox("INBOX")).id
    await account.append(inbox, message("seed"))
    await account.snapshot(inbox)
    seen: list[Any] = []

    async def writer(i: int) -> None:
        res = await account.append(inbox, message(f"w{i}"), flags=["\\Deleted"] if i % 3 else [])
        await account.store_flags(inbox, [res.uid], FlagOp.ADD, [f"$K{i % 4}"])
        if i % 3:
            await account.expunge(inbox, [res.uid])

    async def reader() -> None:
        for _ in range(30):
            seen.append(await account.snapshot(inbox))
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(i) for i in range(30)), reader(), reader())
    for snap in seen:
        assert snap.uids == sorted(set(snap.uids))
        assert len(snap.uids) == len(snap.flags) == len(snap.modseqs)
    last = await account.snapshot(inbox)
    full = await _full(account, inbox)
    assert (last.uids, last.flags, last.modseqs) == (full.uids, full.flags, full.modseqs)
    assert last.uids == [1, *(2 + i for i in range(30) if i % 3 == 0)]


async def test_status_without_size_counts_from_the_kept_snapshot(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATUS without SIZE of a mailbox whose snapshot is kept: MESSAGES, UNSEEN, DELETED
    from the snapshot's flags, no aggregate over the rows (reads.status); the same
    answer as that aggregate, after appends, flag changes, an expunge and a claim."""
    inbox = (await account.mailbox("INBOX")).id
    for i in range(6):
        await account.append(inbox, message(f"m{i}"), flags=["\\Seen"] if i % 2 else [])
    await account.snapshot(inbox)  # kept
    await account.append(inbox, message("new"), flags=["$Work", "\\Deleted"])
    await account.store_flags(inbox, [1, 3], FlagOp.ADD, ["\\Seen", "\\Deleted"])
    await account.store_flags(inbox, [2], FlagOp.REMOVE, ["\\Seen"])
    await account.expunge(inbox, [3])
    full = await account.status(inbox)  # SIZE wanted: the aggregate
    aggregates = [0]
    real_status = reads.status

    def counting(conn: Any, mailbox_id: int) -> Any:
        aggregates[0] += 1
        return real_status(conn, mailbox_id)

    monkeypatch.setattr(reads, "status", counting)
    pooled = _count_pool(account, monkeypatch)
    kept = await account.status(inbox, size=False)
    assert (aggregates[0], pooled[0]) == (0, 0)  # neither the rows nor a reader thread
    assert kept.size == -1 and full.size > 0
    assert dataclasses.replace(kept, size=full.size) == full
    assert (kept.messages, kept.unseen, kept.deleted) == (6, 3, 2)
    other = await account.create_mailbox("Other")  # no snapshot kept: the aggregate
    await account.status(other.id, size=False)
    assert aggregates[0] == 1
