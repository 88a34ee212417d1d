"""Writes that need no disk sync run on the event loop (issue 20): with
``fsync_flags=False`` a STORE, and a \\Recent claim, commit on the event loop's thread
when the account's writer thread has none of the account's writes queued or running —
no hand-over to the writer thread and back. They still commit at ``synchronous=NORMAL``
and leave the connection as they found it, keep the order of the account's writes, wake
IDLE, write their journal records, and never wait for another process's write lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.mailstore import Account, FlagOp, MailStore, NoSuchMailbox, layout
from mailcore.mailstore.records import AppendRecord, FlagsRecord
from tests.mailcore.mailstore.conftest import message

FULL, NORMAL = 2, 1


@pytest.fixture
async def lazy(tmp_path: Path) -> AsyncIterator[MailStore]:
    """A durable store (fsync on) whose flag changes do not wait for the disk."""
    s = await MailStore.open(tmp_path / "lazy", fsync_flags=False)
    yield s
    await s.close()


async def _statements(account: Account) -> list[tuple[int, str]]:
    """Every statement on the account's write connection from now on, with the thread
    that ran it."""
    seen: list[tuple[int, str]] = []

    def note(sql: str) -> None:
        seen.append((threading.get_ident(), sql))

    def start() -> None:
        assert account._core.wconn is not None
        account._core.wconn.set_trace_callback(note)

    await account._writer.submit(start)
    return seen


def _pragmas(account: Account) -> tuple[int, int, int]:
    conn = account._core.wconn
    assert conn is not None
    return (
        conn.execute("PRAGMA synchronous").fetchone()[0],
        conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
        conn.execute("PRAGMA busy_timeout").fetchone()[0],
    )


async def test_a_store_commits_on_the_event_loop_at_normal(lazy: MailStore) -> None:
    acct = await lazy.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    before = await acct._writer.submit(lambda: _pragmas(acct))
    seen = await _statements(acct)
    loop_thread = threading.get_ident()
    levels: list[int] = []

    def note_level(sql: str) -> None:
        seen.append((threading.get_ident(), sql))
        if sql.upper().startswith("COMMIT"):
            conn = acct._core.wconn
            assert conn is not None
            conn.set_trace_callback(None)  # (the PRAGMA read below is not the write's)
            levels.append(conn.execute("PRAGMA synchronous").fetchone()[0])
            conn.set_trace_callback(note_level)

    assert acct._core.wconn is not None
    acct._core.wconn.set_trace_callback(note_level)
    res = await acct.store_flags(inbox, [uid], FlagOp.ADD, ["\\Seen", "$Work"])
    assert res.changed[0][2] == frozenset({"\\Seen", "$Work"})
    writes = [t for t, sql in seen if sql.upper().startswith(("UPDATE", "INSERT", "COMMIT"))]
    assert writes and set(writes) == {loop_thread}  # no hand-over to the writer thread
    assert levels == [NORMAL]
    assert _pragmas(acct) == before  # synchronous, autocheckpoint, busy timeout restored
    assert before[0] == FULL
    # the journal holds the change, numbered right after the append's
    recs = await acct.changes_since(0)
    assert isinstance(recs[-1], FlagsRecord) and recs[-1].uid == uid
    assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
    # and it is in the index for every reader (another connection)
    with sqlite3.connect(layout.index_path(Path(acct.path))) as other:
        (flags,) = other.execute("SELECT count(*) FROM messages WHERE uid = ?", (uid,)).fetchone()
    assert flags == 1
    assert (await acct.fetch(inbox, [uid]))[0].flags == frozenset({"\\Seen", "$Work"})


async def test_with_fsync_flags_on_a_store_goes_to_the_writer(store: MailStore) -> None:
    acct = await store.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    seen = await _statements(acct)
    await acct.store_flags(inbox, [uid], FlagOp.ADD, ["\\Seen"])
    commits = [t for t, sql in seen if sql.upper().startswith("COMMIT")]
    assert len(commits) == 1 and commits[0] != threading.get_ident()


async def test_a_store_queues_behind_the_accounts_waiting_writes(lazy: MailStore) -> None:
    """Per account, writes commit in the order they were asked for: an APPEND waiting
    for the writer thread commits before a STORE asked for after it."""
    acct = await lazy.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    held, go = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        go.wait()

    blocker = acct._writer.submit(hold)  # the writer thread busy with something else
    await asyncio.to_thread(held.wait)
    try:
        appending = asyncio.ensure_future(acct.append(inbox, message("two")))
        await asyncio.sleep(0)  # the append is queued on the writer thread
        storing = asyncio.ensure_future(acct.store_flags(inbox, [uid], FlagOp.ADD, ["\\Flagged"]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not storing.done()  # it did not jump the queue
    finally:
        go.set()
    await blocker
    appended = await appending
    await storing
    recs = await acct.changes_since(0)
    kinds = [(type(r), r.uid) for r in recs if isinstance(r, AppendRecord | FlagsRecord)]
    assert kinds[-2:] == [(AppendRecord, appended.uid), (FlagsRecord, uid)]


async def test_a_store_waits_while_the_writer_holds_the_account(lazy: MailStore) -> None:
    """A transaction of the account open on the writer thread (a delivery's, say):
    the STORE does not touch the connection; it runs after, on the writer thread."""
    acct = await lazy.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    core = acct._core
    held, go = threading.Event(), threading.Event()

    def in_txn() -> None:
        with core.txn():
            held.set()
            go.wait()

    blocker = acct._writer.submit(in_txn)
    await asyncio.to_thread(held.wait)
    try:
        storing = asyncio.ensure_future(acct.store_flags(inbox, [uid], FlagOp.ADD, ["\\Seen"]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not storing.done()
    finally:
        go.set()
    await blocker
    res = await storing
    assert res.changed[0][2] == frozenset({"\\Seen"})


async def test_another_process_holding_the_lock_sends_the_store_to_the_writer(
    lazy: MailStore,
) -> None:
    """Another process's write transaction (here: another connection's BEGIN IMMEDIATE)
    never makes the event loop wait: the STORE goes to the writer thread, which waits."""
    acct = await lazy.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    other = sqlite3.connect(layout.index_path(Path(acct.path)), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        storing = asyncio.ensure_future(acct.store_flags(inbox, [uid], FlagOp.ADD, ["\\Seen"]))
        await asyncio.sleep(0)  # the inline attempt ran, and handed over
        assert not storing.done()
        assert acct._writer.busy_with(acct._core)
        other.execute("COMMIT")
        res = await storing
    finally:
        other.close()
    assert res.changed[0][2] == frozenset({"\\Seen"})
    assert _pragmas(acct)[2] > 0  # the write connection waits for locks again


async def test_an_inline_store_wakes_idle_before_it_answers(lazy: MailStore) -> None:
    acct = await lazy.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    seq = acct.change_seq
    waiter = asyncio.ensure_future(acct.wait_for_change(seq))  # an IDLE session
    await asyncio.sleep(0)
    waiter_event = acct._changed
    await acct.store_flags(inbox, [uid], FlagOp.ADD, ["\\Answered"])
    assert acct._changed is not waiter_event  # the waiters' event was set and replaced
    assert await asyncio.wait_for(waiter, 30) == seq + 1  # (30 s: a bound, not a measure)
    recs = await acct.changes_since(seq, inbox)
    assert [type(r) for r in recs] == [FlagsRecord]


async def test_a_failing_inline_store_changes_nothing(lazy: MailStore) -> None:
    acct = await lazy.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    seq = acct.change_seq
    before = _pragmas(acct)
    with pytest.raises(NoSuchMailbox):
        await acct.store_flags(9999, [uid], FlagOp.ADD, ["\\Seen"])
    assert acct.change_seq == seq
    assert _pragmas(acct) == before
    assert not acct._core.wconn.in_transaction  # type: ignore[union-attr]
    res = await acct.store_flags(inbox, [uid], FlagOp.ADD, ["\\Seen"])
    assert res.changed[0][2] == frozenset({"\\Seen"}) and acct.change_seq == seq + 1


async def test_a_recent_claim_commits_on_the_event_loop(store: MailStore) -> None:
    """\\Recent claims never waited for the disk; they need no hand-over either."""
    acct = await store.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    uid = (await acct.append(inbox, message("one"))).uid
    seen = await _statements(acct)
    assert await acct.claim_recent(inbox) == {uid}
    commits = [t for t, sql in seen if sql.upper().startswith("COMMIT")]
    assert commits == [threading.get_ident()]
    assert await acct.claim_recent(inbox) == set()


async def test_concurrent_stores_and_appends_keep_every_change(lazy: MailStore) -> None:
    """Sessions storing flags (inline when they can) while others append (writer
    thread): every change is in the journal once, densely numbered, mod-sequences
    ascending with it, and the flags end as the last change set them."""
    acct = await lazy.account("a")
    inbox = (await acct.mailbox("INBOX")).id
    first = [(await acct.append(inbox, message(f"m{i}"))).uid for i in range(4)]

    async def storer(n: int) -> None:
        for i in range(30):
            await acct.store_flags(inbox, [first[n]], FlagOp.REPLACE, [f"$k{i}"])

    async def appender() -> list[int]:
        return [(await acct.append(inbox, message(f"x{i}"))).uid for i in range(15)]

    results = await asyncio.gather(*(storer(n) for n in range(4)), appender(), appender())
    new = sorted(results[4] + results[5])  # type: ignore[operator]
    assert new == list(range(first[-1] + 1, first[-1] + 31))  # no UID reused or skipped
    recs = await acct.changes_since(0)
    assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
    flag_recs = [r for r in recs if isinstance(r, FlagsRecord)]
    assert len(flag_recs) == 4 * 30
    modseqs = [r.modseq for r in recs if isinstance(r, FlagsRecord | AppendRecord)]
    assert modseqs == sorted(modseqs)
    got = await acct.fetch(inbox, first)
    assert [m.flags for m in got] == [frozenset({"$k29"})] * 4
