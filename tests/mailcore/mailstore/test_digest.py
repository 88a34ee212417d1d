"""Mailbox digests (issue 11): maintained on every change (equal to one computed from the
rows), different after any single change, equal again when a change is undone, and range
digests that find the differing UID by bisection."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mailcore.mailstore import Account, FlagOp, MailStore
from mailcore.mailstore.digest import recompute, text
from mailcore.mailstore.records import AppendRecord
from tests.mailcore.mailstore.conftest import message

Change = Callable[[Account, int], Awaitable[Any]]

SINGLE_CHANGES: list[tuple[str, Change]] = [
    ("append", lambda a, box: a.append(box, message("new"))),
    ("add a flag", lambda a, box: a.store_flags(box, [2], FlagOp.ADD, ["\\Flagged"])),
    ("remove a flag", lambda a, box: a.store_flags(box, [1], FlagOp.REMOVE, ["\\Seen"])),
    ("add a keyword", lambda a, box: a.store_flags(box, [3], FlagOp.ADD, ["$label"])),
    ("expunge", lambda a, box: a.expunge(box, [3], force=True)),
    ("move out", lambda a, box: a.move(box, [1], 1)),
]


async def _box(acct: Account) -> int:
    box = (await acct.create_mailbox("Box")).id
    await acct.append(box, message("a"), flags=["\\Seen"])
    await acct.append(box, message("b"))
    await acct.append(box, message("c"), flags=["$x"])
    return box


async def _from_rows(acct: Account, box: int) -> str:
    def run(c: sqlite3.Connection) -> str:
        return text(recompute(c, box))

    return await acct._read(run)


@pytest.mark.parametrize(("name", "change"), SINGLE_CHANGES, ids=[c[0] for c in SINGLE_CHANGES])
async def test_any_single_change_changes_the_digest(
    account: Account, name: str, change: Change
) -> None:
    box = await _box(account)
    before = await account.replication.digest(box)
    assert before.digest == await _from_rows(account, box)
    await change(account, box)
    after = await account.replication.digest(box)
    assert after.digest != before.digest
    assert after.digest == await _from_rows(account, box)  # incremental = from scratch
    assert after.highestmodseq > before.highestmodseq


async def test_undoing_a_flag_change_restores_the_digest(account: Account) -> None:
    box = await _box(account)
    before = (await account.replication.digest(box)).digest
    await account.store_flags(box, [2], FlagOp.ADD, ["\\Answered"])
    await account.store_flags(box, [2], FlagOp.REMOVE, ["\\Answered"])
    assert (await account.replication.digest(box)).digest == before


async def test_same_bytes_other_uid_differ(account: Account) -> None:
    one = (await account.create_mailbox("One")).id
    two = (await account.create_mailbox("Two")).id
    await account.append(one, message("same"))
    await account.append(two, message("filler"))
    await account.expunge(two, [1], force=True)
    await account.append(two, message("same"))  # UID 2 in Two, UID 1 in One
    d1, d2 = await account.replication.digest(one), await account.replication.digest(two)
    assert d1.digest != d2.digest


async def test_empty_mailbox_digest(account: Account) -> None:
    box = (await account.create_mailbox("Empty")).id
    d = await account.replication.digest(box)
    assert d.digest == "0" * 64 and d.uidnext == 1


async def test_bisection_finds_the_differing_uid(store: MailStore) -> None:
    a, b = await store.account("a"), await store.account("b", replica=True)
    for rec in await a.replication.read(0):
        await b.replication.apply(rec)
    box = (await a.mailbox("INBOX")).id
    start = a.change_seq
    for i in range(100):
        await a.append(box, message(f"m{i}"))
    for rec in await a.replication.read(start):
        assert isinstance(rec, AppendRecord)
        await b.replication.apply(rec, a.replication.message_bytes(rec.file_id))
    assert (await a.replication.digest(box)).digest == (await b.replication.digest(box)).digest
    await a.store_flags(box, [67], FlagOp.ADD, ["\\Seen"])  # only on a
    assert (await a.replication.digest(box)).digest != (await b.replication.digest(box)).digest
    lo, hi, steps = 1, 100, 0
    while lo < hi:
        mid = (lo + hi) // 2
        ra = await a.replication.range_digest(box, lo, mid)
        rb = await b.replication.range_digest(box, lo, mid)
        assert ra.messages == rb.messages
        lo, hi = (lo, mid) if ra.digest != rb.digest else (mid + 1, hi)
        steps += 1
    assert lo == 67 and steps <= 7
