"""Message rows: append, flags, expunge, copy and move (writer-thread side)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from mailcore.mailstore import digest, keywords, quota
from mailcore.mailstore import flags as flagset
from mailcore.mailstore.core import Txn
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.model import CopyResult, FlagOp, Quota, StoreResult
from mailcore.mailstore.records import AppendRecord, ExpungeRecord, FlagsRecord
from mailcore.mailstore.searchdata import COLUMNS, NO_DATA, SearchData

CHUNK = 500  # UIDs per "IN (...)" list


class NewMessage(NamedTuple):
    file_id: int
    flags: frozenset[str]
    internal_date: float
    size: int
    search: SearchData = NO_DATA
    sha256: bytes = b""  # of the stored bytes
    delivery_key: str | None = None


_NAMES = ", ".join(
    ("mailbox_id, uid, modseq, flags, internal_date, size, file_id, sha256, save_date", *COLUMNS)
)
# the sent date stands in for a missing Date header (RFC 5256 §2.2), fixed here once
INSERT_ROW = f"INSERT INTO messages ({_NAMES}) VALUES ({', '.join('?' * (9 + len(COLUMNS)))})"  # noqa: S608 (constants)


def row_values(base: tuple[object, ...], saved: float, search: SearchData) -> tuple[object, ...]:
    """The values of :data:`INSERT_ROW`: ``base`` = (mailbox id, uid, modseq, flags,
    internal date, size, file id, sha256), ``saved`` the RFC 8514 save date."""
    if search.sent_at is None:
        search = search._replace(sent_at=float(base[4]))  # type: ignore[arg-type]  # RFC 5256 §2.2: the INTERNALDATE
    return (*base, saved, *search)


def chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]


def select_uids(
    conn: sqlite3.Connection,
    columns: str,
    mailbox_id: int,
    uids: Sequence[int] | None,
    extra: str = "",
    *,
    index: str = "",
) -> list[tuple]:
    """Rows of ``mailbox_id`` (all, or those among ``uids``), by ascending UID; ``index``
    names the index to scan for all of them (when ``extra`` matches a partial index)."""
    source = f"messages INDEXED BY {index}" if index and uids is None else "messages"
    base = f"SELECT {columns} FROM {source} WHERE mailbox_id = ?{extra}"  # noqa: S608 (placeholders only)
    if uids is None:
        return conn.execute(base + " ORDER BY uid", (mailbox_id,)).fetchall()
    wanted = sorted(set(uids))
    if len(wanted) > CHUNK * 4:
        keep = set(wanted)
        rows = conn.execute(base + " ORDER BY uid", (mailbox_id,)).fetchall()
        return [r for r in rows if r[0] in keep]
    out: list[tuple] = []
    for part in chunks(wanted):
        marks = ",".join("?" * len(part))
        out.extend(conn.execute(base + f" AND uid IN ({marks}) ORDER BY uid", (mailbox_id, *part)))
    return out


def insert(
    t: Txn,
    mb: MailboxRow,
    new: Sequence[NewMessage],
    *,
    mailbox_keywords: bool = True,
    recent: bool = True,
) -> list[int]:
    """New messages at the end of ``mb``: their UIDs (RFC 3501 §2.3.1.1: ascending).

    Keyword limits apply (keywords.py); ``mailbox_keywords=False`` skips the per-mailbox
    count, for delivery, which only sets the store's own few keywords ($Junk).
    ``recent=False``: the messages' \\Recent is claimed in this transaction by the caller
    (an APPEND into the session's selected mailbox, RFC 3501 §6.3.11), so no other
    session will see them as recent."""
    if not new:
        return []
    added: set[str] = set()
    for m in new:
        if m.flags:
            keywords.check_message(m.flags)
            added |= keywords.of(m.flags)
    if mailbox_keywords:
        keywords.check_mailbox(t.conn, mb.id, added)
    modseq = t.modseq()
    # Read uidnext inside the write lock: several writers never hand out one UID twice.
    row = t.conn.execute("SELECT uidnext, digest FROM mailboxes WHERE id = ?", (mb.id,)).fetchone()
    first = int(row[0])
    value = digest.load(row[1])
    uids = list(range(first, first + len(new)))
    rows = []
    at = t.at
    for uid, m in zip(uids, new, strict=True):
        encoded = flagset.encode(m.flags)
        sha = m.sha256
        # RFC 8514 §3: the save date is when the message was saved in this mailbox
        rows.append(
            row_values(
                (mb.id, uid, modseq, encoded, m.internal_date, m.size, m.file_id, sha),
                at,
                m.search,
            )
        )
        value ^= digest.contribution(uid, sha, encoded)
        t.log(
            AppendRecord(
                t.next_seq(),
                at,
                mb.id,
                mb.uidvalidity,
                uid,
                modseq,
                m.internal_date,
                m.size,
                sha.hex(),
                m.file_id,
                m.flags,
                m.delivery_key,
            )
        )
    t.conn.executemany(INSERT_ROW, rows)
    if recent:
        t.conn.executemany("INSERT INTO recent VALUES (?, ?)", [(mb.id, uid) for uid in uids])
    t.conn.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, digest = ? WHERE id = ?",
        (first + len(new), modseq, digest.dump(value), mb.id),
    )
    t.state.usage_messages += len(new)
    t.state.usage_bytes += sum(m.size for m in new)
    return uids


def set_flags(
    t: Txn,
    mb: MailboxRow,
    uids: Sequence[int],
    op: FlagOp,
    new_flags: frozenset[str],
    *,
    unchanged_since: int | None,
) -> StoreResult:
    """RFC 3501 §6.4.6 STORE with RFC 7162 §3.1.3 UNCHANGEDSINCE."""
    rows = select_uids(t.conn, "uid, modseq, flags, sha256", mb.id, uids)
    if op is not FlagOp.REMOVE:
        keywords.check_mailbox(t.conn, mb.id, keywords.of(new_flags))
    changed: list[tuple[int, int, frozenset[str]]] = []
    modified: list[int] = []
    updates: list[tuple[int, str, int, int]] = []
    delta = digest.EMPTY
    for uid, modseq, encoded, sha in rows:
        if unchanged_since is not None and modseq > unchanged_since:
            modified.append(uid)
            continue
        current = flagset.decode(encoded)
        after = flagset.apply(op, current, new_flags)
        if after is current:
            continue
        keywords.check_message(after)  # refuses the whole STORE (one transaction)
        new_modseq = t.modseq()
        text = flagset.encode(after)
        updates.append((new_modseq, text, mb.id, uid))
        changed.append((uid, new_modseq, after))
        delta ^= digest.contribution(uid, sha, encoded) ^ digest.contribution(uid, sha, text)
        t.log(FlagsRecord(t.next_seq(), t.at, mb.id, uid, new_modseq, after))
    if updates:
        t.conn.executemany(
            "UPDATE messages SET modseq = ?, flags = ? WHERE mailbox_id = ? AND uid = ?", updates
        )
        _update_digest(t, mb.id, delta, highestmodseq=t.modseq())
    return StoreResult(changed=changed, modified=modified)


def _update_digest(t: Txn, mailbox_id: int, delta: int, *, highestmodseq: int) -> None:
    (old,) = t.conn.execute("SELECT digest FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    t.conn.execute(
        "UPDATE mailboxes SET highestmodseq = ?, digest = ? WHERE id = ?",
        (highestmodseq, digest.dump(digest.load(old) ^ delta), mailbox_id),
    )


REMOVE_COLUMNS = "uid, file_id, size, flags, sha256"  # the rows remove() takes


def remove(
    t: Txn, mb: MailboxRow, rows: Sequence[tuple[int, int, int, str, bytes | None]], *, free: bool
) -> None:
    """Take rows of :data:`REMOVE_COLUMNS` out of ``mb``; remember them for QRESYNC."""
    if not rows:
        return
    modseq = t.modseq()
    keys = [(mb.id, r[0]) for r in rows]
    t.conn.executemany("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", keys)
    t.conn.executemany("DELETE FROM recent WHERE mailbox_id = ? AND uid = ?", keys)
    # RFC 7162 §3.2.10: the expunge is remembered with its modseq for VANISHED (EARLIER).
    t.conn.executemany(
        "INSERT OR REPLACE INTO expunged VALUES (?, ?, ?)", [(mb.id, r[0], modseq) for r in rows]
    )
    delta = digest.EMPTY
    for r in rows:
        delta ^= digest.contribution(r[0], r[4], r[3])
    _update_digest(t, mb.id, delta, highestmodseq=modseq)
    t.log(ExpungeRecord(t.next_seq(), t.at, mb.id, tuple(r[0] for r in rows), modseq))
    t.state.usage_messages -= len(rows)
    t.state.usage_bytes -= sum(r[2] for r in rows)
    if free:
        t.release_files([r[1] for r in rows])


def expunge(
    t: Txn, mb: MailboxRow, uids: Sequence[int] | None, *, force: bool = False
) -> list[int]:
    """RFC 3501 §6.4.3 EXPUNGE / RFC 4315 §2.1 UID EXPUNGE: messages flagged \\Deleted.

    ``force``: exactly ``uids``, whatever their flags (RFC 1939 §6 POP3 UPDATE).
    """
    if force and uids is None:
        raise ValueError("a forced expunge needs the UIDs to remove")
    if force:
        rows = select_uids(t.conn, REMOVE_COLUMNS, mb.id, uids)
    else:
        # the same expression as the partial index messages_deleted (schema)
        extra = " AND instr(flags, '\\Deleted') > 0"
        rows = select_uids(t.conn, REMOVE_COLUMNS, mb.id, uids, extra, index="messages_deleted")
    remove(t, mb, rows, free=True)
    return [r[0] for r in rows]


def copy(
    t: Txn,
    src: MailboxRow,
    uids: Sequence[int],
    dst: MailboxRow,
    *,
    move: bool,
    quota: Quota | None,
) -> CopyResult:
    """RFC 3501 §6.4.7 COPY / RFC 6851 MOVE: flags and internal date travel along, the
    file is shared, the copies are \\Recent in the destination."""
    rows = select_uids(
        t.conn,
        "uid, flags, internal_date, size, file_id, sha256, " + ", ".join(COLUMNS),
        src.id,
        uids,
    )
    if not rows:
        return CopyResult(uidvalidity=dst.uidvalidity, mapping=[])
    if not move:
        quota_check(t, quota, sum(r[3] for r in rows), len(rows))
    new = [
        NewMessage(r[4], flagset.decode(r[1]), r[2], r[3], SearchData(*r[6:]), r[5] or b"")
        for r in rows
    ]
    new_uids = insert(t, dst, new)
    if move:
        remove(t, src, [(r[0], r[4], r[3], r[1], r[5]) for r in rows], free=False)
    return CopyResult(
        uidvalidity=dst.uidvalidity,
        mapping=[(r[0], uid) for r, uid in zip(rows, new_uids, strict=True)],
    )


def quota_check(t: Txn, limits: Quota | None, add_bytes: int, add_messages: int) -> None:
    quota.note(t, limits)
    quota.check(t.state, limits, add_bytes, add_messages)


__all__ = [
    "INSERT_ROW",
    "NewMessage",
    "chunks",
    "copy",
    "expunge",
    "insert",
    "row_values",
    "select_uids",
]
