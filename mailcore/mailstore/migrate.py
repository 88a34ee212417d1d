"""Upgrading an account's index written by an older version, when the account is opened.

Runs in the opening transaction (under the write lock), so another process sees the old
index or the upgraded one, never half of it.

* 1 → 2: the search columns of ``messages`` (:mod:`mailcore.mailstore.searchdata`) are
  added and filled by parsing every stored message file once (about 0.2 ms per 10 KiB
  message: a few seconds for an account of 10,000 messages, once).
"""

from __future__ import annotations

import sqlite3
import time

from mailcore import message
from mailcore.logging import get_logger
from mailcore.mailstore import layout, searchdata
from mailcore.mailstore.core import Txn
from mailcore.mailstore.schema import SCHEMA_VERSION

log = get_logger("mailstore")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _to_2(t: Txn) -> None:
    conn = t.conn
    have = _columns(conn, "messages")
    for name in searchdata.COLUMNS:
        if name not in have:
            kind = "TEXT" if name.startswith("s_") else "INTEGER"
            conn.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
    file_ids = [r[0] for r in conn.execute("SELECT DISTINCT file_id FROM messages")]
    started = time.monotonic()
    sets = ", ".join(f"{c} = ?" for c in searchdata.COLUMNS)
    updates = []
    for fid in file_ids:
        path = layout.message_path(t.core.path, fid)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue  # a missing file: the row keeps NULLs (matches no header criterion)
        updates.append((*searchdata.of(message.parse(data)), fid))
    conn.executemany(f"UPDATE messages SET {sets} WHERE file_id = ?", updates)  # noqa: S608
    log.info(
        "index upgraded: search columns filled",
        account=t.core.id,
        files=len(file_ids),
        seconds=round(time.monotonic() - started, 2),
    )


def _to_3(t: Txn) -> None:
    # Mailbox ids are never reused from now on: the next one is above every id the
    # index still mentions (mailboxes and the old change log).
    conn = t.conn
    (top,) = conn.execute(
        "SELECT max(coalesce((SELECT max(id) FROM mailboxes), 0),"
        " coalesce((SELECT max(mailbox_id) FROM changes), 0))"
    ).fetchone()
    t.state.last_mailbox_id = max(t.state.last_mailbox_id, int(top))


_STEPS = {2: _to_2, 3: _to_3}


def upgrade(t: Txn) -> None:
    """Bring the index of ``t`` to :data:`SCHEMA_VERSION` (nothing when it is current)."""
    (version,) = t.conn.execute("SELECT schema FROM state WHERE id = 1").fetchone()
    while version < SCHEMA_VERSION:
        version += 1
        _STEPS[version](t)
        t.conn.execute("UPDATE state SET schema = ? WHERE id = 1", (version,))


__all__ = ["upgrade"]
