"""Mailbox rows: look-ups, CREATE, DELETE, RENAME, subscriptions (writer-thread side)."""

from __future__ import annotations

import sqlite3
import zlib
from typing import NamedTuple

from mailcore.mailstore import names
from mailcore.mailstore.core import Txn
from mailcore.mailstore.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotAllowed,
    NoSuchMailbox,
)
from mailcore.mailstore.model import DEFAULT_MAILBOXES, SPECIAL_USE, MailboxInfo
from mailcore.mailstore.records import (
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxRenameRecord,
    SubscribeRecord,
    UnsubscribeRecord,
)

COLUMNS = "id, name, special_use, uidvalidity, uidnext, highestmodseq"
UIDS = "SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid"  # a mailbox's UIDs


class MailboxRow(NamedTuple):
    id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int


def by_name(conn: sqlite3.Connection, name: str) -> MailboxRow | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM mailboxes WHERE name = ?", (name,)).fetchone()  # noqa: S608 (placeholders only)
    return MailboxRow(*row) if row else None


def by_id(conn: sqlite3.Connection, mailbox_id: int) -> MailboxRow:
    row = conn.execute(f"SELECT {COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()  # noqa: S608 (placeholders only)
    if row is None:
        raise NoSuchMailbox(f"no mailbox with id {mailbox_id}")
    return MailboxRow(*row)


def require(conn: sqlite3.Connection, name: str) -> MailboxRow:
    row = by_name(conn, names.canonical(name))
    if row is None:
        raise NoSuchMailbox(f"no mailbox {name!r}")
    return row


def by_role(conn: sqlite3.Connection, special_use: str) -> MailboxRow | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM mailboxes WHERE lower(special_use) = lower(?) ORDER BY id LIMIT 1",  # noqa: S608 (placeholders only)
        (special_use,),
    ).fetchone()
    return MailboxRow(*row) if row else None


def info(conn: sqlite3.Connection, row: MailboxRow) -> MailboxInfo:
    sub = conn.execute("SELECT 1 FROM subscriptions WHERE name = ?", (row.name,)).fetchone()
    return MailboxInfo(row.id, row.name, row.special_use, sub is not None, row.uidvalidity)


def list_all(conn: sqlite3.Connection) -> list[MailboxInfo]:
    subs = {r[0] for r in conn.execute("SELECT name FROM subscriptions")}
    rows = conn.execute(f"SELECT {COLUMNS} FROM mailboxes ORDER BY name").fetchall()  # noqa: S608 (placeholders only)
    return [MailboxInfo(r[0], r[1], r[2], r[1] in subs, r[3]) for r in rows]


def subscriptions(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM subscriptions ORDER BY name")]


def _check_special_use(special_use: str | None) -> str | None:
    if special_use is None:
        return None
    for known in SPECIAL_USE:
        if known.lower() == special_use.lower():
            return known
    raise InvalidMailboxName(f"unknown special-use attribute {special_use!r}")


def insert_row(
    t: Txn, name: str, special_use: str | None, uidvalidity: int | None = None
) -> MailboxRow:
    """A new mailbox ``name`` (a new id and UIDVALIDITY, unless given), journalled; no
    checks."""
    if uidvalidity is None:
        uidvalidity = t.uidvalidity()
    else:
        t.state.last_uidvalidity = max(t.state.last_uidvalidity, uidvalidity)
    mailbox_id = t.mailbox_id()
    t.conn.execute(
        "INSERT INTO mailboxes (id, name, special_use, uidvalidity, uidnext, highestmodseq)"
        " VALUES (?, ?, ?, ?, 1, ?)",
        (mailbox_id, name, special_use, uidvalidity, t.modseq()),
    )
    modseq = t.modseq()
    t.log(
        MailboxCreateRecord(
            t.next_seq(), t.at, mailbox_id, name, special_use, uidvalidity, 1, modseq
        )
    )
    return MailboxRow(mailbox_id, name, special_use, uidvalidity, 1, modseq)


def create(t: Txn, name: str, special_use: str | None = None) -> MailboxRow:
    """RFC 3501 §6.3.3 CREATE; missing parents are created too."""
    canonical = names.canonical(name)
    use = _check_special_use(special_use)
    if by_name(t.conn, canonical) is not None:
        raise MailboxExists(f"mailbox {canonical!r} exists")
    for parent in names.parents(canonical):
        if by_name(t.conn, parent) is None:
            insert_row(t, parent, None)
    return insert_row(t, canonical, use)


def default_uidvalidity(account_id: str, index: int) -> int:
    """The UIDVALIDITY of a new account's ``index``-th default mailbox: a function of the
    account id alone, so two stores of a mirrored pair that each create the account (a
    login on the slave before the master's first record arrived) create the same
    mailboxes — same ids (1, 2, … in a new account), names and UIDVALIDITY — and each
    side's creation records are no-ops on the other (replica apply) instead of colliding
    ids for the split-brain settlement to merge. Only for paired stores
    (:func:`create_defaults`): account ids are never reused (a new user gets a new one),
    every later mailbox of the account gets a greater value (Txn.uidvalidity: above the
    last one), and a paired store that lost its disk is filled again from its peer, under
    the same values and UIDs (RFC 3501 §2.3.1.1)."""
    return 1 + zlib.crc32(account_id.encode()) % (1 << 30) + index


def create_defaults(t: Txn, *, paired: bool = False) -> None:
    """A new account's default mailboxes, subscribed. ``paired`` (a store of a mirrored
    pair): their UIDVALIDITY from :func:`default_uidvalidity`, the same on both stores;
    else from the clock, so that an account made again on a store that lost its disk
    gets greater values than the ones clients cached (RFC 3501 §2.3.1.1) — a paired store
    gets its mail back from the peer under the same values instead."""
    for index, (name, use) in enumerate(DEFAULT_MAILBOXES):
        uidvalidity = default_uidvalidity(t.core.id, index) if paired else None
        insert_row(t, name, use, uidvalidity)
        subscribe(t, name, True)


def subscribe(t: Txn, name: str, subscribed: bool) -> bool:
    """Add or remove the subscription of a canonical ``name``, journalled when it
    changes; whether it changed."""
    if subscribed:
        sql = "INSERT OR IGNORE INTO subscriptions VALUES (?)"
    else:
        sql = "DELETE FROM subscriptions WHERE name = ?"
    if not t.conn.execute(sql, (name,)).rowcount:
        return False
    cls = SubscribeRecord if subscribed else UnsubscribeRecord
    t.log(cls(t.next_seq(), t.at, name))
    return True


def drop_messages(t: Txn, mailbox_id: int) -> None:
    rows = t.conn.execute(
        "SELECT file_id, size FROM messages WHERE mailbox_id = ?", (mailbox_id,)
    ).fetchall()
    t.conn.execute("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    t.conn.execute("DELETE FROM recent WHERE mailbox_id = ?", (mailbox_id,))
    t.conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
    t.state.usage_messages -= len(rows)
    t.state.usage_bytes -= sum(r[1] for r in rows)
    t.release_files([r[0] for r in rows])


def delete(t: Txn, name: str) -> None:
    """RFC 3501 §6.3.4 DELETE: the mailbox and its messages; children stay where they are."""
    row = require(t.conn, name)
    if names.is_inbox(row.name):
        raise MailboxNotAllowed("INBOX cannot be deleted")
    uids = tuple(r[0] for r in t.conn.execute(UIDS, (row.id,)))
    drop_messages(t, row.id)
    t.conn.execute("DELETE FROM mailboxes WHERE id = ?", (row.id,))
    # the UIDs it held: a mirror peer that took more mail into it keeps that (splitboxes.py)
    t.log(MailboxDeleteRecord(t.next_seq(), t.at, row.id, row.name, t.modseq(), uids))


def rename(t: Txn, old: str, new: str) -> list[tuple[int, int, int]]:
    """RFC 3501 §6.3.5 RENAME; children move along. Renaming INBOX moves its messages to
    a new mailbox and leaves INBOX empty: the (old uid, mailbox id, new uid) moved."""
    src = require(t.conn, old)
    target = names.canonical(new)
    if by_name(t.conn, target) is not None:
        raise MailboxExists(f"mailbox {target!r} exists")
    if target.startswith(src.name + names.SEP):
        raise MailboxNotAllowed("a mailbox cannot be renamed into itself")
    if names.is_inbox(src.name):
        return _rename_inbox(t, src, target)
    for parent in names.parents(target):
        if by_name(t.conn, parent) is None and parent != src.name:
            insert_row(t, parent, None)
    prefix = src.name + names.SEP
    children = t.conn.execute(
        f"SELECT {COLUMNS} FROM mailboxes WHERE substr(name, 1, ?) = ?",  # noqa: S608
        (len(prefix), prefix),
    ).fetchall()
    moves = [(src.id, src.name, target)] + [
        (r[0], r[1], target + names.SEP + r[1][len(prefix) :]) for r in children
    ]
    for _, _, to in moves:
        if to != target and by_name(t.conn, to) is not None:
            raise MailboxExists(f"mailbox {to!r} exists")
    modseq = t.modseq()
    for mailbox_id, frm, to in moves:
        names.canonical(to)  # the new names must be valid too (length, depth)
        t.conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (to, mailbox_id))
        t.log(MailboxRenameRecord(t.next_seq(), t.at, mailbox_id, frm, to, modseq))
        if subscribe(t, frm, False):
            subscribe(t, to, True)
    return []


def _rename_inbox(t: Txn, inbox: MailboxRow, target: str) -> list[tuple[int, int, int]]:
    from mailcore.mailstore import messages  # here: messages imports this module

    dst = create(t, target)
    uids = [
        r[0] for r in t.conn.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (inbox.id,))
    ]
    result = messages.copy(t, inbox, uids, dst, move=True, quota=None)
    return [(src_uid, dst.id, dst_uid) for src_uid, dst_uid in result.mapping]


def set_subscribed(t: Txn, name: str, subscribed: bool) -> None:
    """RFC 3501 §6.3.6/§6.3.7; a name may be subscribed whether or not it exists."""
    subscribe(t, names.canonical(name), subscribed)
