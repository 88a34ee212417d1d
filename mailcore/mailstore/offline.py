"""Reading an account's journal without the engine (``mailctl journal``): a read-only
SQLite connection to its index, safe while the store runs (WAL readers never block it)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from mailcore.mailstore import journal, layout, readers
from mailcore.mailstore.records import ReaderPosition, Record


@contextlib.contextmanager
def _index(account_path: Path) -> Iterator[sqlite3.Connection]:
    path = layout.index_path(account_path)
    if not path.is_file():
        raise FileNotFoundError(f"no mail store account at {account_path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("BEGIN")  # one snapshot for every query
        yield conn
    finally:
        conn.close()


def tail(account_path: Path, count: int, after: int | None = None) -> tuple[int, list[Record]]:
    """The journal's head and its newest ``count`` records (or those after ``after``)."""
    with _index(account_path) as conn:
        (head,) = conn.execute("SELECT change_seq FROM state WHERE id = 1").fetchone()
        first = journal.first_kept(conn)
        start = head - count if after is None else after
        if first is not None:
            start = max(start, first - 1)
        return head, journal.read(conn, max(start, 0), limit=count)


def reader_positions(account_path: Path) -> list[ReaderPosition]:
    with _index(account_path) as conn:
        return readers.all_positions(conn)


def accounts(root: Path) -> list[tuple[str, Path]]:
    """Every account directory below the store ``root`` (``<data>/mailstore``)."""
    base = root / "accounts"
    if not base.is_dir():
        return []
    return sorted((p.name, p) for p in base.iterdir() if layout.index_path(p).is_file())


__all__ = ["accounts", "reader_positions", "tail"]
