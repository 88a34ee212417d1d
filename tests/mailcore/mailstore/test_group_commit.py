"""Group commit (issue 15, defect 11): writes of one account that wait for the writer
thread together commit in one transaction — one COMMIT and one sync of the new message
files for all — while each keeps its own result, its own mod-sequence, and fails alone."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from mailcore.mailstore import FlagOp, MailStore, NoSuchMailbox
from mailcore.mailstore.core import Txn
from mailcore.mailstore.records import AppendRecord, UidNextRecord
from tests.mailcore.mailstore.conftest import message
from tests.mailcore.mailstore.test_sync_calls import FULL, Trace, trace  # noqa: F401


async def _held(store: MailStore, account_id: str) -> threading.Event:
    """Occupy the account's writer thread until the returned event is set, so the writes
    queued meanwhile are taken together."""
    acct = await store.account(account_id)
    gate, busy = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        gate.wait(60)

    acct._writer.post(hold)
    await asyncio.to_thread(busy.wait, 60)
    return gate


async def test_waiting_writes_commit_together_each_with_its_own_result(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s")
    try:
        acct = await store.account("g")
        inbox = (await acct.mailbox("INBOX")).id
        first = await acct.append(inbox, message("first"))
        commits = acct._core._commits
        gate = await _held(store, "g")
        appends = [asyncio.ensure_future(acct.append(inbox, message(f"m{i}"))) for i in range(5)]
        flags = asyncio.ensure_future(acct.store_flags(inbox, [first.uid], FlagOp.ADD, ["$A"]))
        missing = asyncio.ensure_future(acct.store_flags(9999, [1], FlagOp.ADD, ["\\Seen"]))
        await asyncio.sleep(0.05)  # all queued behind the held thread
        gate.set()
        results = [await a for a in appends]
        with pytest.raises(NoSuchMailbox):
            await missing  # fails alone
        changed = await flags
        assert acct._core._commits == commits + 1  # one transaction for all seven
        assert [r.uid for r in results] == [first.uid + 1 + i for i in range(5)]
        modseqs = [r.modseq for r in results] + [changed.changed[0][1]]
        assert len(set(modseqs)) == len(modseqs)  # RFC 7162 §3.1.1: one per write
        snap = await acct.snapshot(inbox)
        assert snap.uids == [first.uid, *(r.uid for r in results)]
        assert "$A" in snap.flags[0]
        changes = await acct.changes_since(0, inbox)
        seqs = [c.seq for c in changes]
        assert seqs == sorted(set(seqs))  # the change log stays gap-free and ordered
    finally:
        await store.close()


async def test_a_failed_write_leaves_no_file_and_no_counter_behind(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s")
    try:
        acct = await store.account("g")
        inbox = (await acct.mailbox("INBOX")).id
        gate = await _held(store, "g")

        def broken(t: Txn) -> None:
            t.write_files([b"never visible"])
            t.log(UidNextRecord(t.next_seq(), t.at, inbox, 999, t.modseq()))
            raise ValueError("fails after writing its file")

        ok_before = asyncio.ensure_future(acct.append(inbox, message("a")))
        bad = acct._writer.submit_txn(acct._core, broken)
        ok_after = asyncio.ensure_future(acct.append(inbox, message("b")))
        await asyncio.sleep(0.05)
        gate.set()
        a, b = await ok_before, await ok_after
        with pytest.raises(ValueError):
            await bad
        files = sorted((store.account_dir("g") / "msgs").glob("*/*"))
        assert len(files) == 2  # the failed write's file was removed
        assert b.uid == a.uid + 1
        changes = await acct.changes_since(0, inbox)
        assert [c.uid for c in changes if isinstance(c, AppendRecord)] == [a.uid, b.uid]
        assert not any(isinstance(c, UidNextRecord) for c in changes)  # rolled back
        assert [c.seq for c in changes] == sorted({c.seq for c in changes})
        # the counters went back: the next write continues without a hole in the log
        c = await acct.append(inbox, message("c"))
        assert c.uid == b.uid + 1
    finally:
        await store.close()


async def test_grouped_appends_sync_their_files_before_the_commit(
    trace: Trace,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = await MailStore.open(tmp_path / "s")
    try:
        acct = await store.account("g")
        inbox = (await acct.mailbox("INBOX")).id
        gate = await _held(store, "g")
        start = len(trace.events)
        appends = [asyncio.ensure_future(acct.append(inbox, message(f"m{i}"))) for i in range(4)]
        await asyncio.sleep(0.05)
        gate.set()
        for a in appends:
            await a
        files = {str(p) for p in (store.account_dir("g") / "msgs").glob("*/*")}
        assert len(files) == 4
        commits = [i for i, e in enumerate(trace.events) if i >= start and e[0] == "commit"]
        visible = next(i for i in commits if trace.events[i][3] == 4)
        before = trace.events[start:visible]
        synced = {e[1] for e in before if e[0] == "fsync"}
        if not files <= synced:  # many files at once: one syncfs instead
            assert [e for e in before if e[0] == "syncfs"], "files not synced before commit"
        else:
            assert {str(Path(f).parent) for f in files} <= synced  # and their directory
        assert trace.events[visible][2] == FULL
        assert len([i for i in commits if trace.events[i][3] >= 1]) == 1  # one commit
    finally:
        await store.close()
