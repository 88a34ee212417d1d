"""The change log: per-account sequence, typed records, in-process wake-ups."""

from __future__ import annotations

import asyncio

from mailcore.mailstore import Account, Delivery, FlagOp, MailStore
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
    kinds = [(c.kind, c.mailbox_id, c.uid) for c in changes]
    assert kinds == [
        ("append", inbox.id, 1),
        ("flags", inbox.id, 1),
        ("expunge", inbox.id, 1),
        ("mailbox", box.id, None),
        ("mailbox", box.id, None),
        ("mailbox", box.id, None),
    ]
    assert [c.name for c in changes[3:]] == ["Folder", "Renamed", None]
    assert changes[1].flags == {"\\Deleted"}
    seqs = [c.seq for c in changes]
    assert seqs == list(range(start + 1, start + 7)) and account.change_seq == seqs[-1]
    modseqs = [c.modseq or 0 for c in changes[:3]]
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
    assert [(c.kind, c.uid) for c in changes] == [("append", r.uid)]


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
