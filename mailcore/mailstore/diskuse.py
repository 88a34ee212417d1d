"""How much disk the store uses and how much is left, exported as gauges for
``mailctl status`` and Prometheus.

The used figure is summed from the accounts' indexes, not from the message files: each
index keeps its account's usage (``state.usage_bytes``, what quotas count: every message
copy at its full size), to which the index files' own sizes are added. That is one
directory entry per account and a one-row query for the accounts whose index changed
since the last look — never a ``stat`` of every message file (millions, every minute).
The free figure is ``statvfs`` of the store's file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

from mailcore import metrics
from mailcore.mailstore import layout

Stamp = tuple[int, int, int, int]  # index and WAL: mtime_ns and size


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return 0, 0
    return st.st_mtime_ns, st.st_size


def _mail_bytes(index: str) -> int:
    """An account's usage as its index records it (read-only, never waits long)."""
    conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=1.0)
    try:
        row = conn.execute("SELECT usage_bytes FROM state WHERE id = 1").fetchone()
    finally:
        conn.close()
    return int(row[0]) if row and row[0] else 0


class DiskUse:
    """Remembers each account's figure with the index's stamp, so only the indexes that
    changed since the last measurement are read again."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._known: dict[str, tuple[Stamp, int]] = {}
        self.index_reads = 0  # for tests: indexes read (not taken from memory)

    def measure(self) -> tuple[int, int]:
        """``(bytes used, bytes free for unprivileged writers)``."""
        used = 0
        present: set[str] = set()
        accounts = self.root / "accounts"
        try:
            entries = list(os.scandir(accounts))
        except OSError:
            entries = []
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            index = str(layout.index_path(Path(entry.path)))
            db, wal = _stat(index), _stat(index + "-wal")
            if db == (0, 0):
                continue  # not an account (yet)
            present.add(entry.name)
            stamp = (*db, *wal)
            known = self._known.get(entry.name)
            if known is not None and known[0] == stamp:
                mail = known[1]
            else:
                try:
                    mail = _mail_bytes(index)
                    self.index_reads += 1
                except sqlite3.Error:
                    mail = known[1] if known is not None else 0  # busy: the last figure
                self._known[entry.name] = (stamp, mail)
            used += mail + db[1] + wal[1]
        for gone in set(self._known) - present:
            del self._known[gone]
        vfs = os.statvfs(self.root)
        return used, vfs.f_bavail * vfs.f_frsize


def disk_use(root: Path) -> tuple[int, int]:
    """``(bytes used, bytes free)`` measured afresh (see :class:`DiskUse`)."""
    return DiskUse(root).measure()


async def report_forever(root: Path, interval: float = 60.0) -> None:
    """Refresh the disk gauges every ``interval`` seconds (measured in a thread)."""
    meter = DiskUse(root)
    while True:
        with contextlib.suppress(OSError):
            used, free = await asyncio.to_thread(meter.measure)
            metrics.STORE_DISK_USED.set(used)
            metrics.STORE_DISK_FREE.set(free)
        await asyncio.sleep(interval)
