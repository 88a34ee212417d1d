"""Disk use from the accounts' indexes: no stat of every message file, and only the
indexes that changed are read again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mailcore.mailstore import Delivery, MailStore, diskuse
from tests.mailcore.mailstore.conftest import message


async def test_disk_use_reads_indexes_not_message_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await MailStore.open(tmp_path / "s", fsync=False)
    try:
        for n in range(3):
            batch = [
                Delivery(f"k{n}/{i}", f"user{n}", "inbox", message(f"m{i}"), 0.0) for i in range(40)
            ]
            assert all(r.outcome == "delivered" for r in await store.deliver(batch))
        looked_at: list[str] = []
        real_stat, real_scandir = os.stat, os.scandir

        def stat(path: Any, *a: Any, **k: Any) -> Any:
            looked_at.append(str(path))
            return real_stat(path, *a, **k)

        def scandir(path: Any) -> Any:
            looked_at.append(str(path))
            return real_scandir(path)

        monkeypatch.setattr(diskuse.os, "stat", stat)
        monkeypatch.setattr(diskuse.os, "scandir", scandir)
        meter = diskuse.DiskUse(store.root)
        used, free = meter.measure()
        assert free > 0
        mail = 0
        for n in range(3):
            mail += (await (await store.account(f"user{n}")).usage())[0]
        assert used >= mail > 0
        assert meter.index_reads == 3
        assert not [p for p in looked_at if "/msgs" in p]  # no message file, no shard
        assert len(looked_at) == 1 + 3 * 2  # the accounts directory; index and WAL each
        # nothing changed: nothing read again
        assert meter.measure()[0] == used
        assert meter.index_reads == 3
        # one account gets mail: only its index is read again
        acct = await store.account("user1")
        inbox = await acct.mailbox("INBOX")
        big = message("big", body="b" * 100_000)
        await acct.append(inbox.id, big)
        again, _ = meter.measure()
        assert meter.index_reads == 4
        assert again >= used + len(big)
    finally:
        await store.close()
