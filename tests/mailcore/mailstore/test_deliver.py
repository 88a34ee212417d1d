"""Group-commit delivery in the engine: outcomes, idempotency, Junk, account ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcore.mailstore import Delivery, InvalidAccountId, MailStore
from tests.mailcore.mailstore.conftest import message


async def test_batch_across_accounts_keeps_order(store: MailStore) -> None:
    items = [
        Delivery("m1/a", "alice", "inbox", message("1"), 100.0),
        Delivery("m1/b", "bob", "inbox", message("1"), 100.0),
        Delivery("m2/a", "alice", "junk", message("2"), 200.0, flags=frozenset({"$Junk"})),
        Delivery("m3/a", "alice", "inbox", message("3"), 300.0),
    ]
    results = await store.deliver(items)
    assert [r.key for r in results] == [i.key for i in items]
    assert all(r.outcome == "delivered" for r in results)
    alice = await store.account("alice")
    inbox, junk = await alice.mailbox("INBOX"), await alice.mailbox("Junk")
    assert (results[0].mailbox_id, results[0].uid) == (inbox.id, 1)
    assert (results[3].mailbox_id, results[3].uid) == (inbox.id, 2)
    assert (results[2].mailbox_id, results[2].uid) == (junk.id, 1)
    (spam,) = await alice.fetch(junk.id, [1])
    assert spam.flags == {"$Junk"} and spam.internal_date == 200.0
    bob = await store.account("bob")
    assert (await bob.status((await bob.mailbox("INBOX")).id)).messages == 1


async def test_redelivery_is_recognised(store: MailStore) -> None:
    item = Delivery("msg-1/alice", "alice", "inbox", message("once"), 1.0)
    (first,) = await store.deliver([item])
    again = await store.deliver([item, item])
    assert first.outcome == "delivered"
    assert [r.outcome for r in again] == ["duplicate", "duplicate"]
    assert {(r.mailbox_id, r.uid) for r in again} == {(first.mailbox_id, first.uid)}
    twice = await store.deliver([Delivery("new/alice", "alice", "inbox", message("n"), 1.0)] * 2)
    assert [r.outcome for r in twice] == ["delivered", "duplicate"]
    assert twice[0].uid == twice[1].uid
    acct = await store.account("alice")
    assert (await acct.usage())[1] == 2


async def test_junk_falls_back_to_inbox(store: MailStore) -> None:
    acct = await store.account("nojunk")
    await acct.delete_mailbox("Junk")
    (r,) = await store.deliver([Delivery("s/1", "nojunk", "junk", message("spam"), 0.0)])
    assert r.outcome == "delivered"
    assert r.mailbox_id == (await acct.mailbox("INBOX")).id


async def test_bad_account_ids_fail_alone(store: MailStore, tmp_path: Path) -> None:
    results = await store.deliver(
        [
            Delivery("x/1", "../../etc", "inbox", message("x"), 0.0),
            Delivery("x/2", "fine", "inbox", message("x"), 0.0),
        ]
    )
    assert [r.outcome for r in results] == ["failed", "delivered"]
    assert not (tmp_path / "etc").exists()
    for bad in ("", "UPPER", "a/b", ".hidden", "x" * 65, "a\0b"):
        with pytest.raises(InvalidAccountId):
            await store.account(bad)


async def test_remove_account(store: MailStore) -> None:
    await store.deliver([Delivery("r/1", "gone", "inbox", message("bye"), 0.0)])
    path = store.account_dir("gone")
    assert path.is_dir()
    await store.remove_account("gone")
    assert not path.exists()
    acct = await store.account("gone")  # a fresh, empty account
    assert await acct.usage() == (0, 0)


def _open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


async def test_idle_accounts_give_back_their_file_descriptors(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s", max_open_accounts=3)
    try:
        before = _open_fds()
        for i in range(12):
            batch = [
                Delivery(f"k{i}/{j}", f"user{j}", "inbox", message(f"m{i}"), 0.0) for j in range(12)
            ]
            results = await store.deliver(batch)
            assert all(r.outcome == "delivered" for r in results)
        connected = [a for a in store.loaded() if a._core.connected]
        assert len(connected) <= 3
        assert _open_fds() - before <= 3 * 3 * 3  # index, WAL, shm; writer + 2 readers
        # A released account reopens transparently, for reads and writes.
        acct = await store.account("user0")
        inbox = await acct.mailbox("INBOX")
        assert (await acct.status(inbox.id)).messages == 12
        assert (await acct.append(inbox.id, message("again"))).uid == 13
    finally:
        await store.close()


async def test_unused_accounts_are_forgotten_and_used_ones_kept(tmp_path: Path) -> None:
    import gc
    import weakref

    store = await MailStore.open(tmp_path / "s", max_open_accounts=3)
    try:
        held = await store.account("user0")  # a session holds it all along
        await held.snapshot((await held.mailbox("INBOX")).id)
        assert len(held._snapshots) == 1
        first = await store.account("user1")
        gone = weakref.ref(first)
        del first
        for j in range(2, 12):
            results = await store.deliver(
                [Delivery(f"k{j}", f"user{j}", "inbox", message(f"m{j}"), 0.0)]
            )
            assert results[0].outcome == "delivered"
        gc.collect()
        # at most max_open_accounts kept for their own sake; the unused one is gone
        assert len(store._accounts) <= 3
        assert gone() is None
        # the held one is the same object (never two cores for one account), and an idle
        # account's snapshots were dropped with its connections
        again = await store.account("user0")
        assert again is held
        assert len(held._snapshots) == 0
        assert len(store.loaded()) <= 4
        inbox = await held.mailbox("INBOX")
        assert (await held.append(inbox.id, message("x"))).uid == 1
    finally:
        await store.close()
