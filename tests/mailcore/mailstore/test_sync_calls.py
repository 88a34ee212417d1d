"""Durability is not taken on trust: these tests watch the engine's system calls.

* Message files are made durable (``syncfs(2)`` of the account's file system, or an
  ``fsync`` of every file and of its directory) *before* the SQLite commit that makes
  them visible; removing either sync fails a test here.
* Every SQLite connection the store opens runs with ``PRAGMA synchronous`` = 2 (FULL),
  at every commit and until it is closed, so a committed delivery survives a power cut.

The calls are counted by wrapping ``files._syncfs``, ``os.fsync`` and ``sqlite3.connect``
with monkeypatch; the real calls still happen.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import Delivery, MailStore
from mailcore.mailstore import files as files_mod
from mailcore.mailstore.model import FlagOp
from tests.mailcore.mailstore.conftest import message

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA
BATCH = 5


@dataclass
class Trace:
    """What the engine did, in order, from every thread."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    connections: list[tuple[str, sqlite3.Connection]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *event: Any) -> None:
        with self.lock:
            self.events.append(event)


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Trace]:
    t = Trace()
    real_connect = sqlite3.connect
    real_fsync = os.fsync
    real_syncfs = files_mod._syncfs

    class Recorded(sqlite3.Connection):
        def _note_commit(self) -> None:
            level = sqlite3.Connection.execute(self, "PRAGMA synchronous").fetchone()[0]
            try:
                (stored,) = sqlite3.Connection.execute(
                    self, "SELECT count(*) FROM messages"
                ).fetchone()
            except sqlite3.OperationalError:  # no index tables yet
                stored = -1
            t.add("commit", id(self), level, stored)

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
            if sql.strip().upper().startswith(("COMMIT", "END")):
                self._note_commit()
            return super().execute(sql, *args)

        def commit(self) -> None:
            if self.in_transaction:
                self._note_commit()
            super().commit()

        def close(self) -> None:
            level = sqlite3.Connection.execute(self, "PRAGMA synchronous").fetchone()[0]
            t.add("close", id(self), level)
            super().close()

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if str(tmp_path) not in str(database):
            return real_connect(database, *args, **kwargs)
        kwargs.setdefault("factory", Recorded)
        conn = real_connect(database, *args, **kwargs)
        t.connections.append((str(database), conn))
        return conn

    def fsync(fd: int) -> None:
        t.add("fsync", _fd_path(fd))
        real_fsync(fd)

    def syncfs(root: Path) -> None:
        t.add("syncfs", str(root))
        real_syncfs(root)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(files_mod, "_syncfs", syncfs)
    yield t


async def _deliver_batch(root: Path, trace: Trace) -> tuple[Path, set[str], int]:
    """Deliver BATCH messages to one account in one group commit; return the account
    directory, its message files and the index of the commit that made them visible."""
    store = await MailStore.open(root)
    try:
        await store.account("durable")  # opened (and committed) before the batch
        adir = store.account_dir("durable")
        start = len(trace.events)
        items = [
            Delivery(f"m{i}/durable", "durable", "inbox", message(f"s{i}"), 1.0)
            for i in range(BATCH)
        ]
        assert {r.outcome for r in await store.deliver(items)} == {"delivered"}
        files = {str(p) for p in (adir / "msgs").glob("*/*")}
        assert len(files) == BATCH
        commits = [
            i
            for i, e in enumerate(trace.events)
            if i >= start and e[0] == "commit" and e[3] == BATCH
        ]
        assert commits, "no commit made the batch visible"
        return adir, files, commits[0]
    finally:
        await store.close()


async def test_default_strategy_syncs_files_before_the_commit(trace: Trace, tmp_path: Path) -> None:
    adir, files, visible = await _deliver_batch(tmp_path / "s", trace)
    before = trace.events[:visible]
    if files_mod._SYNCFS is not None:
        # Linux ≥ 5.8: one syncfs(2) of the account's file system for the whole batch.
        synced = [e for e in before if e[0] == "syncfs"]
        assert synced and all(Path(e[1]) == adir for e in synced)
        assert len(synced) == 1  # one per batch, not per message
    else:
        fsynced = {e[1] for e in before if e[0] == "fsync"}
        assert files <= fsynced
    assert trace.events[visible][2] == FULL


async def test_fsync_fallback_syncs_every_file_and_directory_before_the_commit(
    trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_mod, "_SYNCFS", None)  # a kernel without syncfs(2)
    _, files, visible = await _deliver_batch(tmp_path / "s", trace)
    before = trace.events[:visible]
    fsynced = {e[1] for e in before if e[0] == "fsync"}
    assert files <= fsynced, "a message file was not fsynced before its row was committed"
    shards = {str(Path(f).parent) for f in files}
    assert shards <= fsynced, "the directory entries of new files were not fsynced"
    assert not [e for e in trace.events if e[0] == "syncfs"]


async def test_every_connection_runs_synchronous_full(trace: Trace, tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s")
    try:
        acct = await store.account("sync")
        inbox = await acct.mailbox("INBOX")
        await store.deliver([Delivery("d1/sync", "sync", "inbox", message("d1"), 1.0)])
        await acct.append(inbox.id, message("appended"))
        uids = (await acct.snapshot(inbox.id)).uids
        assert len(uids) == 2
        await acct.fetch(inbox.id, uids[:1])  # the event loop's own read connection
        await acct.fetch(inbox.id, uids * 3)  # a reader thread's connection
        await acct.create_mailbox("Projects")
        for _, conn in trace.connections:
            level = sqlite3.Connection.execute(conn, "PRAGMA synchronous").fetchone()[0]
            assert level == FULL
    finally:
        await store.close()
    assert len(trace.connections) >= 2  # the writer and at least one reader
    commits = [e for e in trace.events if e[0] == "commit"]
    assert commits and all(e[2] == FULL for e in commits), commits
    assert all(e[2] == FULL for e in trace.events if e[0] == "close")


async def test_flag_changes_commit_without_waiting_for_the_disk_only_when_asked(
    trace: Trace, tmp_path: Path
) -> None:
    """``fsync_flags=False`` (POSTERN_FSYNC_FLAGS): a STORE commits at NORMAL, every other
    write still at FULL, and the connection is back at FULL after it; by default a STORE
    commits at FULL like the rest."""
    NORMAL = 1
    levels: dict[bool, list[int]] = {}
    for fsync_flags in (True, False):
        opened = len(trace.connections)
        store = await MailStore.open(tmp_path / f"s{fsync_flags}", fsync_flags=fsync_flags)
        try:
            acct = await store.account("flags")
            inbox = await acct.mailbox("INBOX")
            uid = (await acct.append(inbox.id, message("one"))).uid
            start = len(trace.events)
            await acct.store_flags(inbox.id, [uid], FlagOp.ADD, ["\\Seen", "$Work"])
            await acct.append(inbox.id, message("two"))
            await acct.store_flags(inbox.id, [uid], FlagOp.ADD, ["\\Deleted"])
            await acct.expunge(inbox.id)
            levels[fsync_flags] = [e[2] for e in trace.events[start:] if e[0] == "commit"]
            for _, conn in trace.connections[opened:]:
                level = sqlite3.Connection.execute(conn, "PRAGMA synchronous").fetchone()[0]
                assert level == FULL
        finally:
            await store.close()
    assert levels[True] == [FULL, FULL, FULL, FULL]
    assert levels[False] == [NORMAL, FULL, NORMAL, FULL]
