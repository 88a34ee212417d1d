"""Mailbox digests: what two stores compare to know that a mailbox is the same on both.

A message contributes ``SHA-256(uid as 8 bytes big-endian ‖ SHA-256 of its stored bytes ‖
its flags, sorted and space separated)``; a mailbox's digest is the XOR of its messages'
contributions (32 bytes, NULL for none). XOR makes it incremental: an append adds a
contribution, an expunge removes it, a flag change swaps the old for the new, each in the
transaction of the change (messages.py), so reading it is one row. A range digest (UIDs
a..b) is computed from the rows of that range, so two stores can bisect to the UIDs where
they differ without sending every UID.
"""

from __future__ import annotations

import hashlib
import sqlite3

from mailcore.mailstore import mailboxes
from mailcore.mailstore.records import MailboxDigest, RangeDigest

EMPTY = 0


def contribution(uid: int, sha256: bytes | None, flags: str) -> int:
    """One message's share of the digest (``flags`` as stored: flags.encode)."""
    h = hashlib.sha256(uid.to_bytes(8, "big"))
    h.update(sha256 or b"")
    h.update(flags.encode())
    return int.from_bytes(h.digest(), "big")


def load(value: bytes | None) -> int:
    return EMPTY if value is None else int.from_bytes(value, "big")


def dump(value: int) -> bytes | None:
    return None if value == EMPTY else value.to_bytes(32, "big")


def text(value: int) -> str:
    return f"{value:064x}"


def mailbox(conn: sqlite3.Connection, mailbox_id: int) -> MailboxDigest:
    mb = mailboxes.by_id(conn, mailbox_id)
    (value,) = conn.execute("SELECT digest FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    return MailboxDigest(mb.id, mb.uidvalidity, mb.uidnext, mb.highestmodseq, text(load(value)))


def of_rows(rows: list[tuple[int, bytes | None, str]]) -> int:
    value = EMPTY
    for uid, sha, flags in rows:
        value ^= contribution(uid, sha, flags)
    return value


def uid_range(conn: sqlite3.Connection, mailbox_id: int, first: int, last: int) -> RangeDigest:
    mailboxes.by_id(conn, mailbox_id)
    rows = conn.execute(
        "SELECT uid, sha256, flags FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?",
        (mailbox_id, first, last),
    ).fetchall()
    return RangeDigest(mailbox_id, first, last, len(rows), text(of_rows(rows)))


def recompute(conn: sqlite3.Connection, mailbox_id: int) -> int:
    """The digest from the message rows (upgrades, and tests of the incremental one)."""
    rows = conn.execute(
        "SELECT uid, sha256, flags FROM messages WHERE mailbox_id = ?", (mailbox_id,)
    ).fetchall()
    return of_rows(rows)


__all__ = ["contribution", "dump", "load", "mailbox", "recompute", "text", "uid_range"]
