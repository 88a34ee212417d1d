"""The change log: per-account sequence, typed records, in-process wake-ups."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import Account, Delivery, FlagOp, MailStore, core, journal
from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxRenameRecord,
    Record,
    mailbox_of,
)
from tests.mailcore.mailstore.conftest import message


async def test_every_write_appends_typed_changes(account: Account) -> None:
    inbox = await account.mailbox("INBOX")
    start = account.change_seq
    await account.append(inbox.id, message("a"))
    await account.store_flags(inbox.id, [1], FlagOp.ADD, ["\\Deleted"])
    await account.expunge(inbox.id)
    box = await account.create_mailbox("Folder")
    await account.rename_mailbox("Folder", "Renamed")
    await account.delete_mailbox("Renamed")
    changes = await account.changes_since(start)
    kinds = [(c.kind, mailbox_of(c)) for c in changes]
    assert kinds == [
        ("append", inbox.id),
        ("flags", inbox.id),
        ("expunge", inbox.id),
        ("mailbox-create", box.id),
        ("mailbox-rename", box.id),
        ("mailbox-delete", box.id),
    ]
    append, flags, expunge, create, rename, delete = changes
    assert isinstance(append, AppendRecord) and append.uid == 1
    assert isinstance(flags, FlagsRecord) and flags.flags == {"\\Deleted"}
    assert isinstance(expunge, ExpungeRecord) and expunge.uids == (1,)
    assert isinstance(create, MailboxCreateRecord) and create.name == "Folder"
    assert isinstance(rename, MailboxRenameRecord)
    assert (rename.old_name, rename.new_name) == ("Folder", "Renamed")
    assert isinstance(delete, MailboxDeleteRecord) and delete.name == "Renamed"
    seqs = [c.seq for c in changes]
    assert seqs == list(range(start + 1, start + 7)) and account.change_seq == seqs[-1]
    modseqs = [append.modseq, flags.modseq, expunge.modseq]
    assert modseqs == sorted(set(modseqs))  # strictly increasing
    only_inbox = await account.changes_since(start, mailbox_id=inbox.id)
    assert [c.kind for c in only_inbox] == ["append", "flags", "expunge"]
    assert await account.changes_since(account.change_seq) == []


async def test_wait_for_change_wakes_on_delivery(store: MailStore, account: Account) -> None:
    seq = account.change_seq
    waiter = asyncio.create_task(account.wait_for_change(seq, timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    (r,) = await store.deliver([Delivery("w1", account.id, "inbox", message("wake"), 0.0)])
    assert r.outcome == "delivered"
    new_seq = await asyncio.wait_for(waiter, 10)
    assert new_seq > seq
    changes = await account.changes_since(seq)
    assert [(c.kind, getattr(c, "uid", None)) for c in changes] == [("append", r.uid)]


async def test_wait_for_change_times_out_and_returns_at_once_when_behind(
    account: Account,
) -> None:
    seq = account.change_seq
    assert await account.wait_for_change(seq, timeout=0.05) == seq
    assert await account.wait_for_change(seq - 1, timeout=30) == seq


async def test_changes_survive_reopen(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path)) / "s"
    store = await MailStore.open(root)
    acct = await store.account("log")
    inbox = await acct.mailbox("INBOX")
    await acct.append(inbox.id, message("x"))
    seq = acct.change_seq
    await store.close()
    store = await MailStore.open(root)
    try:
        acct = await store.account("log")
        assert acct.change_seq == seq
        assert (await acct.changes_since(seq - 1))[0].kind == "append"
    finally:
        await store.close()


async def _from_index(account: Account, seq: int, mailbox_id: int | None = None) -> list[Record]:
    return await account._read(lambda c: journal.read(c, seq, mailbox_id=mailbox_id))


async def test_recent_changes_come_from_memory_and_equal_the_index(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = (await account.mailbox("INBOX")).id
    archive = (await account.mailbox("Archive")).id
    start = account.change_seq
    for i in range(6):
        await account.append(inbox if i % 2 else archive, message(f"m{i}"))
    await account.store_flags(inbox, [1, 2], FlagOp.ADD, ["\\Seen", "$x"])
    await account.move(inbox, [1], archive)
    await account.create_mailbox("New")
    reads_done = 0
    real = account._read

    async def counting(fn: Any) -> Any:
        nonlocal reads_done
        reads_done += 1
        return await real(fn)

    monkeypatch.setattr(account, "_read", counting)
    for seq in range(start, account.change_seq):
        for box in (None, inbox, archive):
            got = await account.changes_since(seq, box)
            assert got == await _from_index(account, seq, box)
    # every comparison read the index once for the expected value, never for the answer
    assert reads_done == 3 * (account.change_seq - start)
    # nothing newer in memory: the index says (another process may have written)
    assert await account.changes_since(account.change_seq) == []
    assert reads_done == 3 * (account.change_seq - start) + 1


async def test_changes_beyond_memory_or_from_another_process_come_from_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "CHANGES_IN_MEMORY", 4)
    root = tmp_path / "s"
    one = await MailStore.open(root, exclusive=False)
    two = await MailStore.open(root, exclusive=False)
    try:
        a, b = await one.account("shared"), await two.account("shared")
        inbox = (await a.mailbox("INBOX")).id
        start = a.change_seq
        for i in range(6):
            await a.append(inbox, message(f"a{i}"))
        # older than memory holds: read from the index, same answer
        assert [_uid(c) for c in await a.changes_since(start)] == [1, 2, 3, 4, 5, 6]
        before_b = a.change_seq
        await b.append(inbox, message("from b"))  # a gap in a's memory
        await a.append(inbox, message("a again"))
        got = await a.changes_since(before_b)
        assert [_uid(c) for c in got] == [7, 8]  # b's change is not lost
        assert got == await _from_index(a, before_b)
        assert [_uid(c) for c in await a.changes_since(a.change_seq - 1)] == [8]
    finally:
        await one.close()
        await two.close()


def _uid(rec: Record) -> int:
    assert isinstance(rec, AppendRecord)
    return rec.uid


async def test_recent_changes_up_to_a_position_equal_the_index(account: Account) -> None:
    inbox = (await account.mailbox("INBOX")).id
    start = account.change_seq
    for i in range(4):
        await account.append(inbox, message(f"u{i}"))
    await account.store_flags(inbox, [1, 3], FlagOp.ADD, ["\\Seen"])
    head = account.change_seq
    for seq in range(start, head):
        for upto in range(seq + 1, head + 1):
            got = account._core.recent_changes(seq, inbox, upto)
            assert got is not None
            expected = await account._read(
                lambda c, s=seq, u=upto: journal.read(c, s, mailbox_id=inbox, upto=u)
            )
            assert got == expected
    assert account._core.recent_changes(start, inbox, head + 1) is None  # not committed yet
