"""Crash safety on real files: orphans are swept at open, a kill -9 in the middle of
group commits never leaves a partial message visible, a full disk leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore.mailstore import Delivery, MailStore
from mailcore.mailstore.engine import STORAGE_FULL
from mailcore.mailstore.layout import index_path, message_path, shard_dir
from tests.mailcore.mailstore.conftest import message

ROOT = Path(__file__).resolve().parents[3]


def _next_file_id(account_dir: Path) -> int:
    with sqlite3.connect(index_path(account_dir)) as conn:
        return int(conn.execute("SELECT next_file_id FROM state").fetchone()[0])


def _message_files(account_dir: Path) -> set[int]:
    return {int(p.name) for p in (account_dir / "msgs").glob("*/*")}


async def test_orphaned_files_are_swept_at_open(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = await MailStore.open(root)
    acct = await store.account("crashy")
    inbox = await acct.mailbox("INBOX")
    for i in range(3):
        await acct.append(inbox.id, message(f"m{i}"))
    adir = store.account_dir("crashy")
    await store.close()
    committed = _message_files(adir)
    first_free = _next_file_id(adir)
    # What a crash between writing files and committing their rows leaves behind.
    planted = [message_path(adir, first_free), message_path(adir, first_free + 7)]
    planted.append(shard_dir(adir, 5) / str(5 * 4096 + 1))
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial mess")
    # And an expunge whose commit landed but whose unlink did not.
    with sqlite3.connect(index_path(adir)) as conn:
        (victim,) = conn.execute("SELECT file_id FROM messages WHERE uid = 3").fetchone()
        conn.execute("DELETE FROM messages WHERE uid = 3")
        conn.execute("DELETE FROM files WHERE id = ?", (victim,))
        conn.execute("INSERT INTO unlink VALUES (?)", (victim,))
    store = await MailStore.open(root)
    try:
        acct = await store.account("crashy")
        assert not any(p.exists() for p in planted)
        assert _message_files(adir) == committed - {victim}
        assert (await acct.snapshot(inbox.id)).uids == [1, 2]
        # New messages reuse the free ids and read back whole.
        res = await acct.append(inbox.id, message("after crash"))
        (rec,) = await acct.fetch(inbox.id, [res.uid])
        with acct.open_message(rec) as fh:
            assert fh.read() == message("after crash")
    finally:
        await store.close()


async def test_disk_full_leaves_nothing_behind(tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "s")
    try:
        acct = await store.account("full")
        adir = store.account_dir("full")
        first_free = _next_file_id(adir)
        # The kernel's own ENOSPC: the next message file is /dev/full.
        target = message_path(adir, first_free + 1)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to("/dev/full")
        items = [Delivery(f"k{i}", "full", "inbox", message(f"m{i}"), 0.0) for i in range(3)]
        results = await store.deliver(items)
        assert [r.outcome for r in results] == ["failed"] * 3
        assert all(r.error == STORAGE_FULL for r in results)
        inbox = await acct.mailbox("INBOX")
        assert (await acct.status(inbox.id)).messages == 0
        assert _message_files(adir) == set()  # the first file was removed again
        assert await acct.usage() == (0, 0)
        # The same batch goes through once there is room.
        results = await store.deliver(items)
        assert [r.outcome for r in results] == ["delivered"] * 3
    finally:
        await store.close()


CHILD = r"""
import asyncio, sys
from pathlib import Path
from mailcore.mailstore import Delivery, MailStore

def body(key):
    return (f"Subject: {key}\r\nMessage-ID: <{key}@crash>\r\n\r\n" + key * 300 + "\r\n").encode()

async def main():
    store = await MailStore.open(Path(sys.argv[1]))
    n = 0
    while True:
        keys = [f"b{n}-{i}" for i in range(25)]
        batch = [Delivery(k, "victim", "inbox", body(k), 0.0) for k in keys]
        results = await store.deliver(batch)
        assert all(r.outcome == "delivered" for r in results), results
        print("committed", n, flush=True)
        n += 1

asyncio.run(main())
"""


def _body(key: str) -> bytes:
    return (f"Subject: {key}\r\nMessage-ID: <{key}@crash>\r\n\r\n" + key * 300 + "\r\n").encode()


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
async def test_kill_9_during_group_commits(tmp_path: Path, delay: float) -> None:
    root = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    # Wait for the first commit, then kill at an arbitrary moment.
    first = await asyncio.to_thread(proc.stdout.readline)
    assert first.startswith(b"committed"), proc.stderr.read() if proc.stderr else b""
    await asyncio.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    rest = await asyncio.to_thread(proc.stdout.read)
    proc.wait()
    acknowledged = 1 + sum(1 for line in rest.splitlines() if line.startswith(b"committed"))
    store = await MailStore.open(root)
    try:
        acct = await store.account("victim")
        inbox = await acct.mailbox("INBOX")
        snap = await acct.snapshot(inbox.id)
        records = await acct.fetch(inbox.id, snap.uids)
        # Whole batches only, every one the child saw committed, each message intact.
        assert len(records) % 25 == 0
        assert len(records) >= acknowledged * 25
        assert snap.uids == list(range(1, len(records) + 1))
        subjects = []
        for rec in records:
            assert rec.parsed is not None and rec.parsed.envelope.subject is not None
            key = rec.parsed.envelope.subject
            with acct.open_message(rec) as fh:
                data = fh.read()
            assert hashlib.sha256(data).digest() == hashlib.sha256(_body(key)).digest()
            subjects.append(key)
        assert len(set(subjects)) == len(subjects)
        adir = store.account_dir("victim")
        assert len(_message_files(adir)) == len(records)  # orphans of the cut batch swept
    finally:
        await store.close()
