"""Commit notices between stores sharing one root (notify.py, issue 20): a commit in one
wakes the waiters of the other, a lost notice is caught up by the poll, concurrent
writers through both never reuse a UID, and the change log read across them is whole."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.mailstore import MailStore, notify
from mailcore.mailstore.model import FlagOp
from mailcore.mailstore.records import AppendRecord, FlagsRecord
from tests.mailcore.mailstore.conftest import message

WAIT = 60.0  # generous: only a failure waits this long


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[MailStore, MailStore]]:
    root = tmp_path / "store"
    # the main process's store holds the lock; a worker's inherits it (lock_fd)
    main = await MailStore.open(root)
    worker = await MailStore.open(root, lock_fd=os.dup(main.lock_fd))
    # a poll slower than any test: only notices can wake the waiters below
    main.enable_notices(poll_every=3600)
    worker.enable_notices(poll_every=3600)
    yield main, worker
    await worker.close()
    await main.close()


def test_notice_round_trip() -> None:
    assert notify.parse(notify.encode("ünï@example.com", 42)) == ("ünï@example.com", 42)
    assert notify.parse(b"x y") is None
    assert notify.parse(b"12") is None
    assert notify.parse(b"12 ") is None
    assert notify.parse(b"12 \xff") is None


async def test_a_commit_wakes_the_other_store(pair: tuple[MailStore, MailStore]) -> None:
    main, worker = pair
    a = await main.account("acct")
    b = await worker.account("acct")
    inbox = await b.mailbox("INBOX")
    seen = b.change_seq
    waiting = asyncio.ensure_future(b.wait_for_change(seen, timeout=WAIT))
    await asyncio.sleep(0)
    done = await a.append(inbox.id, message("from main"))
    assert await waiting > seen
    assert b.change_seq == a.change_seq
    changes = await b.changes_since(seen, inbox.id)
    (appended,) = changes
    assert isinstance(appended, AppendRecord) and appended.uid == done.uid
    # and the other way round, for a flag change
    seen = a.change_seq
    waiting = asyncio.ensure_future(a.wait_for_change(seen, timeout=WAIT))
    await asyncio.sleep(0)
    await b.store_flags(inbox.id, [done.uid], FlagOp.ADD, ["\\Seen"])
    assert await waiting > seen
    changes = await a.changes_since(seen, inbox.id)
    assert [type(c) for c in changes] == [FlagsRecord]


async def test_a_lost_notice_is_caught_up_by_the_poll(tmp_path: Path) -> None:
    root = tmp_path / "store"
    main = await MailStore.open(root)
    silent = await MailStore.open(root, lock_fd=os.dup(main.lock_fd))  # sends no notices
    try:
        main.enable_notices(poll_every=0.05)
        a = await main.account("acct")
        b = await silent.account("acct")
        inbox = await b.mailbox("INBOX")
        seen = a.change_seq
        waiting = asyncio.ensure_future(a.wait_for_change(seen, timeout=WAIT))
        await asyncio.sleep(0)
        await b.append(inbox.id, message("unannounced"))
        assert await waiting == b.change_seq > seen
        assert main._notices is not None and main._notices.received == 0
    finally:
        await silent.close()
        await main.close()


async def test_concurrent_writers_of_both_stores_never_reuse_a_uid(
    pair: tuple[MailStore, MailStore],
) -> None:
    main, worker = pair
    a = await main.account("acct")
    b = await worker.account("acct")
    inbox = await a.mailbox("INBOX")
    writes = [
        (a if i % 2 else b).append(inbox.id, message(f"m{i}"), flags=["$K"]) for i in range(60)
    ]
    done = await asyncio.gather(*writes)
    uids = sorted(r.uid for r in done)
    assert uids == list(range(1, 61))
    # both see every message, and the whole change log from the start
    for acct in (a, b):
        snap = await acct.snapshot(inbox.id)
        assert snap.uids == uids
        log = await acct.changes_since(0, inbox.id)
        assert sorted(c.uid for c in log if isinstance(c, AppendRecord)) == uids


async def test_a_dead_peer_socket_is_dropped(pair: tuple[MailStore, MailStore]) -> None:
    main, worker = pair
    notices = main._notices
    assert notices is not None
    stale = notices.dir / "999999-0.sock"
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(stale))  # bound, then closed: nobody reads there any more
    a = await main.account("acct")
    inbox = await a.mailbox("INBOX")
    await a.append(inbox.id, message("one"))
    assert not stale.exists()
    b = await worker.account("acct")
    assert b.change_seq == a.change_seq


async def test_only_the_store_user_may_send_notices(pair: tuple[MailStore, MailStore]) -> None:
    main, worker = pair
    for store in (main, worker):
        notices = store._notices
        assert notices is not None
        assert notices.dir.stat().st_mode & 0o777 == 0o700
        assert notices.path.stat().st_mode & 0o777 == 0o600
