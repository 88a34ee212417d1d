"""Upgrading an account's index written by an older version, when the account is opened.

Runs in the opening transaction (under the write lock), so another process sees the old
index or the upgraded one, never half of it.

* 1 → 2: the search columns of ``messages`` (:mod:`mailcore.mailstore.searchdata`) are
  added and filled by parsing every stored message file once (about 0.2 ms per 10 KiB
  message: a few seconds for an account of 10,000 messages, once).
* 2 → 3: the journal. Mailbox ids are never reused (``state.last_mailbox_id``); the
  SHA-256 of every message file is computed once (``messages.sha256``) and every
  mailbox's digest from it (:mod:`mailcore.mailstore.digest`); the journal starts with a
  record per mailbox, subscription and message, numbered from 1 (so a replica can be
  built from it); the old change log (``changes``) is dropped.
* 3 → 4: the SORT / THREAD keys (:mod:`mailcore.mailstore.sortkeys`) are added and
  filled by parsing every stored message file once, with their indexes; the RFC 8514
  save date is added: for the messages already there it is not known, and their
  internal date (the delivery or APPEND time, unless the APPEND gave one) stands in.
* 4 → 5: journal origins (``journal_origin``: the peer a replicated record came from, so
  the mirror never ships it back). The table is created by the schema; the step itself
  has nothing to convert: every earlier record is this store's own.
* 5 → 6: the string sort keys (base subject, first address, display names) change from
  ``i;ascii-casemap`` to ``i;unicode-casemap`` form (:mod:`mailcore.mailstore.casemap`,
  RFC 5256 §1). No message file is read: mapping a stored key again gives the key of
  the original text, and only keys with a non-ASCII character change. (An index below
  4 skips it: step 4 fills the keys in the new form; mapping those again could change
  them, e.g. U+0345 of a decomposed Greek letter titlecases to U+0399.)
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from mailcore import message
from mailcore.logging import get_logger
from mailcore.mailstore import digest, layout, schema, searchdata
from mailcore.mailstore import flags as flagset
from mailcore.mailstore.casemap import casemap
from mailcore.mailstore.core import Txn
from mailcore.mailstore.records import AppendRecord, MailboxCreateRecord, SubscribeRecord
from mailcore.mailstore.schema import SCHEMA_VERSION

log = get_logger("mailstore")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _to_2(t: Txn) -> None:
    conn = t.conn
    have = _columns(conn, "messages")
    for name in searchdata.SEARCH_COLUMNS:
        if name not in have:
            kind = "TEXT" if name.startswith("s_") else "INTEGER"
            conn.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
    file_ids = [r[0] for r in conn.execute("SELECT DISTINCT file_id FROM messages")]
    started = time.monotonic()
    sets = ", ".join(f"{c} = ?" for c in searchdata.SEARCH_COLUMNS)
    updates = []
    for fid in file_ids:
        path = layout.message_path(t.core.path, fid)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue  # a missing file: the row keeps NULLs (matches no header criterion)
        values = searchdata.of(message.parse(data), data)[: len(searchdata.SEARCH_COLUMNS)]
        updates.append((*values, fid))
    conn.executemany(f"UPDATE messages SET {sets} WHERE file_id = ?", updates)  # noqa: S608
    log.info(
        "index upgraded: search columns filled",
        account=t.core.id,
        files=len(file_ids),
        seconds=round(time.monotonic() - started, 2),
    )


def _to_3(t: Txn) -> None:
    conn = t.conn
    # Mailbox ids are never reused from now on: the next one is above every id the
    # index still mentions (mailboxes and the old change log).
    (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM mailboxes").fetchone()
    if "mailbox_id" in _columns(conn, "changes"):
        (logged,) = conn.execute("SELECT coalesce(max(mailbox_id), 0) FROM changes").fetchone()
        top = max(top, logged)
    t.state.last_mailbox_id = max(t.state.last_mailbox_id, int(top))
    if "sha256" not in _columns(conn, "messages"):
        conn.execute("ALTER TABLE messages ADD COLUMN sha256 BLOB")
    if "digest" not in _columns(conn, "mailboxes"):
        conn.execute("ALTER TABLE mailboxes ADD COLUMN digest BLOB")
    started = time.monotonic()
    hashes = []
    for (fid,) in conn.execute("SELECT DISTINCT file_id FROM messages").fetchall():
        try:
            with open(layout.message_path(t.core.path, fid), "rb") as fh:
                hashes.append((hashlib.sha256(fh.read()).digest(), fid))
        except OSError:
            continue  # a missing file: NULL, as an empty one in the digest
    conn.executemany("UPDATE messages SET sha256 = ? WHERE file_id = ?", hashes)
    boxes = [r[0] for r in conn.execute("SELECT id FROM mailboxes ORDER BY id")]
    for mailbox_id in boxes:
        value = digest.dump(digest.recompute(conn, mailbox_id))
        conn.execute("UPDATE mailboxes SET digest = ? WHERE id = ?", (value, mailbox_id))
    conn.execute("DROP TABLE IF EXISTS changes")
    conn.execute("DELETE FROM journal")  # (empty, unless an index was downgraded by hand)
    t.state.change_seq = 0  # positions in the old change log mean nothing to the journal
    _baseline(t)
    log.info(
        "index upgraded: journal started",
        account=t.core.id,
        files=len(hashes),
        records=len(t.changes),
        seconds=round(time.monotonic() - started, 2),
    )


def _baseline(t: Txn) -> None:
    """The journal of an upgraded index starts with what the index holds: a record per
    mailbox, subscription and message, so replaying it from zero rebuilds the account
    (the old change log had too little to say so; it is dropped)."""
    conn = t.conn
    boxes = conn.execute(
        "SELECT id, name, special_use, uidvalidity, uidnext, highestmodseq"
        " FROM mailboxes ORDER BY id"
    ).fetchall()
    for mailbox_id, name, use, uidvalidity, uidnext, highest in boxes:
        t.log(
            MailboxCreateRecord(
                t.next_seq(), t.at, mailbox_id, name, use, uidvalidity, uidnext, highest
            )
        )
    for (name,) in conn.execute("SELECT name FROM subscriptions ORDER BY name").fetchall():
        t.log(SubscribeRecord(t.next_seq(), t.at, name))
    by_box = {r[0]: r[3] for r in boxes}
    rows = conn.execute(
        "SELECT mailbox_id, uid, modseq, flags, internal_date, size, file_id, sha256"
        " FROM messages ORDER BY mailbox_id, uid"
    )
    for mailbox_id, uid, modseq, flags, date, size, fid, sha in rows:
        t.log(
            AppendRecord(
                t.next_seq(),
                t.at,
                mailbox_id,
                by_box[mailbox_id],
                uid,
                modseq,
                date,
                size,
                (sha or b"").hex(),
                fid,
                flagset.decode(flags),
            )
        )


_SORT_TYPES = {"k_reply": "INTEGER", "sent_at": "REAL"}  # the others are TEXT


def _to_4(t: Txn) -> None:
    conn = t.conn
    have = _columns(conn, "messages")
    for name in (*searchdata.SORT_COLUMNS, "save_date"):
        if name not in have:
            kind = "REAL" if name == "save_date" else _SORT_TYPES.get(name, "TEXT")
            conn.execute(f"ALTER TABLE messages ADD COLUMN {name} {kind}")
    started = time.monotonic()
    sets = ", ".join(f"{c} = ?" for c in searchdata.SORT_COLUMNS)
    first = len(searchdata.SEARCH_COLUMNS)
    updates = []
    for (fid,) in conn.execute("SELECT DISTINCT file_id FROM messages").fetchall():
        try:
            with open(layout.message_path(t.core.path, fid), "rb") as fh:
                data = fh.read()
        except OSError:
            continue  # a missing file: NULL keys (sorted first, threaded alone)
        updates.append((*searchdata.of(message.parse(data), data)[first:], fid))
    conn.executemany(f"UPDATE messages SET {sets} WHERE file_id = ?", updates)  # noqa: S608
    # RFC 5256 §2.2: without a readable Date the internal date is the sent date
    conn.execute("UPDATE messages SET sent_at = internal_date WHERE sent_at IS NULL")
    conn.execute("UPDATE messages SET save_date = internal_date WHERE save_date IS NULL")
    schema.create_sort_indexes(conn)
    log.info(
        "index upgraded: sort keys filled",
        account=t.core.id,
        files=len(updates),
        seconds=round(time.monotonic() - started, 2),
    )


def _to_5(t: Txn) -> None:
    """Journal origins: the table comes from the schema; older records are local."""


_CASEMAPPED = ("k_subject", "k_from", "k_to", "k_cc", "k_dfrom", "k_dto")


def _to_6(t: Txn) -> None:
    """Sort keys in ``i;unicode-casemap`` form (RFC 5051): only rows with a key that is
    not ASCII change."""
    conn = t.conn
    started = time.monotonic()
    cols = ", ".join(_CASEMAPPED)
    updates = []
    for mailbox_id, uid, *keys in conn.execute(
        f"SELECT mailbox_id, uid, {cols} FROM messages"  # noqa: S608
    ):
        if all(k is None or k.isascii() for k in keys):
            continue
        updates.append((*(None if k is None else casemap(k) for k in keys), mailbox_id, uid))
    sets = ", ".join(f"{c} = ?" for c in _CASEMAPPED)
    conn.executemany(
        f"UPDATE messages SET {sets} WHERE mailbox_id = ? AND uid = ?",  # noqa: S608
        updates,
    )
    log.info(
        "index upgraded: sort keys in i;unicode-casemap form",
        account=t.core.id,
        rows=len(updates),
        seconds=round(time.monotonic() - started, 2),
    )


_STEPS = {2: _to_2, 3: _to_3, 4: _to_4, 5: _to_5, 6: _to_6}


def upgrade(t: Txn) -> None:
    """Bring the index of ``t`` to :data:`SCHEMA_VERSION` (nothing when it is current)."""
    (version,) = t.conn.execute("SELECT schema FROM state WHERE id = 1").fetchone()
    start = version
    while version < SCHEMA_VERSION:
        version += 1
        if version == 6 and start < 4:
            pass  # the keys were just filled by step 4, in i;unicode-casemap form already
        else:
            _STEPS[version](t)
        t.conn.execute("UPDATE state SET schema = ? WHERE id = 1", (version,))


__all__ = ["upgrade"]
