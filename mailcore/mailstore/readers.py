"""Journal readers with positions, and pruning that keeps what they need.

A reader (``mirror:store-b``) is a row of ``journal_readers``: the last record it
confirmed. Pruning deletes records older than both the newest :data:`core.CHANGES_KEPT`
and the oldest position of a reader in good standing, so a reader never loses a record it
has not confirmed. A reader that falls further behind than :data:`MAX_BEHIND` records, or
confirms nothing for :data:`MAX_AGE` seconds while records wait for it, is marked
``resync`` (counted in ``postern_journal_reader_resync_total``) and no longer holds
records back; reading or confirming then raises :class:`ResyncRequired`.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

from mailcore import metrics
from mailcore.logging import get_logger
from mailcore.mailstore import journal
from mailcore.mailstore.errors import ResyncRequired, UnknownReader
from mailcore.mailstore.records import ReaderPosition, Record

if TYPE_CHECKING:
    from mailcore.mailstore.core import Txn

log = get_logger("mailstore")

MAX_BEHIND = 5_000_000  # records a reader may lag before it is told to resync
MAX_AGE = 30 * 86400.0  # seconds a lagging reader may go without confirming


def _row(conn: sqlite3.Connection, name: str) -> tuple[int, float, int]:
    row = conn.execute(
        "SELECT position, confirmed_at, resync FROM journal_readers WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        raise UnknownReader(f"no journal reader {name!r}")
    return int(row[0]), float(row[1]), int(row[2])


def register(t: Txn, name: str, position: int | None, *, reset: bool) -> ReaderPosition:
    """Register ``name`` at ``position`` (default: the journal's head). An existing reader
    keeps its position unless ``reset`` (after it copied the account afresh)."""
    head = t.state.change_seq
    at = head if position is None else max(0, min(position, head))
    if not name or len(name) > 200:
        raise ValueError("a reader name is 1 to 200 characters")
    found = t.conn.execute("SELECT 1 FROM journal_readers WHERE name = ?", (name,)).fetchone()
    if found is None or reset:
        t.conn.execute(
            "INSERT OR REPLACE INTO journal_readers VALUES (?, ?, ?, 0)", (name, at, time.time())
        )
    return position_of(t.conn, name)


def unregister(t: Txn, name: str) -> None:
    if not t.conn.execute("DELETE FROM journal_readers WHERE name = ?", (name,)).rowcount:
        raise UnknownReader(f"no journal reader {name!r}")


def confirm(t: Txn, name: str, seq: int) -> None:
    """``name`` applied every record up to ``seq``; positions never go back."""
    position, _, resync = _row(t.conn, name)
    if resync:
        raise ResyncRequired(f"journal reader {name!r} must resync")
    if seq > t.state.change_seq:
        raise ValueError(f"record {seq} does not exist yet (head {t.state.change_seq})")
    t.conn.execute(
        "UPDATE journal_readers SET position = ?, confirmed_at = ? WHERE name = ?",
        (max(position, seq), time.time(), name),
    )


def read(conn: sqlite3.Connection, name: str, limit: int) -> list[Record]:
    """The next records for ``name`` after its confirmed position (at most ``limit``)."""
    position, _, resync = _row(conn, name)
    if resync:
        raise ResyncRequired(f"journal reader {name!r} must resync")
    return journal.read(conn, position, limit=limit)


def read_skipping(
    conn: sqlite3.Connection, name: str, limit: int, origin: str
) -> tuple[list[Record], int]:
    """The next records for ``name`` (at most ``limit`` read) except those replica apply
    wrote from ``origin`` (a mirror never ships a peer's record back to it), and the
    last ``seq`` read (0: none): confirm that, so the skipped records are passed for good."""
    records = read(conn, name, limit)
    if not records:
        return [], 0
    first, last = records[0].seq, records[-1].seq
    skip = {
        seq
        for (seq,) in conn.execute(
            "SELECT seq FROM journal_origin WHERE seq BETWEEN ? AND ? AND origin = ?",
            (first, last, origin),
        )
    }
    return [r for r in records if r.seq not in skip], last


def mark_origin(t: Txn, after: int, origin: str) -> None:
    """The records written in ``t`` after ``after`` came from ``origin``."""
    t.conn.executemany(
        "INSERT OR REPLACE INTO journal_origin VALUES (?, ?)",
        [(seq, origin) for seq in range(after + 1, t.state.change_seq + 1)],
    )


def last_own(conn: sqlite3.Connection) -> int:
    """The newest journal record without an origin (written here, not by replica apply)."""
    row = conn.execute(
        "SELECT seq FROM journal j WHERE NOT EXISTS"
        " (SELECT 1 FROM journal_origin o WHERE o.seq = j.seq) ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return int(row[0]) if row else 0


def forget_origin(t: Txn, origin: str) -> None:
    """Ship ``origin``'s records back to it too (a wiped peer needs its own changes)."""
    t.conn.execute("DELETE FROM journal_origin WHERE origin = ?", (origin,))


def position_of(conn: sqlite3.Connection, name: str) -> ReaderPosition:
    position, confirmed_at, resync = _row(conn, name)
    (head,) = conn.execute("SELECT change_seq FROM state WHERE id = 1").fetchone()
    return ReaderPosition(name, position, confirmed_at, bool(resync), head - position)


def all_positions(conn: sqlite3.Connection) -> list[ReaderPosition]:
    (head,) = conn.execute("SELECT change_seq FROM state WHERE id = 1").fetchone()
    rows = conn.execute(
        "SELECT name, position, confirmed_at, resync FROM journal_readers ORDER BY name"
    )
    return [ReaderPosition(n, p, c, bool(r), head - p) for n, p, c, r in rows]


def prune(
    conn: sqlite3.Connection,
    account_id: str,
    keep: int,
    max_behind: int | None = None,
    max_age: float | None = None,
) -> int:
    """Inside the caller's write transaction: mark readers beyond the ceilings (default
    :data:`MAX_BEHIND`, :data:`MAX_AGE`), then delete the records nobody needs (older than
    the newest ``keep`` and than every reader in good standing). The number deleted."""
    max_behind = MAX_BEHIND if max_behind is None else max_behind
    max_age = MAX_AGE if max_age is None else max_age
    (head,) = conn.execute("SELECT change_seq FROM state WHERE id = 1").fetchone()
    now = time.time()
    floor = head - keep
    for name, position, confirmed_at, resync in conn.execute(
        "SELECT name, position, confirmed_at, resync FROM journal_readers"
    ).fetchall():
        if resync:
            continue
        behind = head - position
        if behind > max_behind or (behind > 0 and now - confirmed_at > max_age):
            conn.execute("UPDATE journal_readers SET resync = 1 WHERE name = ?", (name,))
            metrics.JOURNAL_READER_RESYNC.labels(reader=name).inc()
            log.warning(
                "journal reader must resync", account=account_id, reader=name, behind=behind
            )
            continue
        floor = min(floor, position)
    deleted = conn.execute("DELETE FROM journal WHERE seq <= ?", (floor,)).rowcount
    conn.execute("DELETE FROM journal_origin WHERE seq <= ?", (floor,))
    if deleted:
        metrics.JOURNAL_PRUNED.inc(deleted)
    return int(deleted)


__all__ = [
    "MAX_AGE",
    "MAX_BEHIND",
    "all_positions",
    "confirm",
    "forget_origin",
    "mark_origin",
    "position_of",
    "prune",
    "read",
    "read_skipping",
    "register",
    "unregister",
]
