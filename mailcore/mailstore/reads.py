"""Read-only queries, run on a reader connection inside one read transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mailcore import message
from mailcore.logging import get_logger
from mailcore.mailstore import flags as flagset
from mailcore.mailstore import mailboxes, snapshots
from mailcore.mailstore.messages import select_uids
from mailcore.mailstore.model import MailboxStatus, MessageRecord, Snapshot
from mailcore.mailstore.snapshots import SnapshotCache

log = get_logger("mailstore")


def status(conn: sqlite3.Connection, mailbox_id: int) -> MailboxStatus:
    mb = mailboxes.by_id(conn, mailbox_id)
    count, size, unseen, deleted = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0),"
        " coalesce(sum(instr(flags, '\\Seen') = 0), 0),"
        " coalesce(sum(instr(flags, '\\Deleted') > 0), 0)"
        " FROM messages WHERE mailbox_id = ?",
        (mailbox_id,),
    ).fetchone()
    (recent,) = conn.execute(
        "SELECT count(*) FROM recent WHERE mailbox_id = ?", (mailbox_id,)
    ).fetchone()
    return MailboxStatus(
        id=mb.id,
        messages=count,
        unseen=unseen,
        deleted=deleted,
        size=size,
        recent=recent,
        uidnext=mb.uidnext,
        uidvalidity=mb.uidvalidity,
        highestmodseq=mb.highestmodseq,
    )


def status_kept(
    conn: sqlite3.Connection,
    mailbox_id: int,
    cache: SnapshotCache,
    recent: snapshots.Recent | None = None,
) -> MailboxStatus | None:
    """:func:`status` without SIZE (``size`` -1) from the mailbox's kept snapshot, when
    it is current or brought up to date from the changes in memory: MESSAGES, UNSEEN
    and DELETED counted from its flags instead of an aggregate over the mailbox's rows
    (RFC 3501 §6.3.10; DELETED RFC 9051 §6.3.11). None: no such snapshot (read rows)."""
    found = snapshots.current(conn, mailbox_id, cache, recent, cached_only=True)
    if found is None:
        return None
    mb, _, entry = found
    seen = deleted = 0
    for f in entry.flags:
        if "\\Seen" in f:
            seen += 1
        if "\\Deleted" in f:
            deleted += 1
    (recent_count,) = conn.execute(
        "SELECT count(*) FROM recent WHERE mailbox_id = ?", (mailbox_id,)
    ).fetchone()
    return MailboxStatus(
        id=mb.id,
        messages=len(entry.uids),
        unseen=len(entry.uids) - seen,
        deleted=deleted,
        size=-1,
        recent=recent_count,
        uidnext=mb.uidnext,
        uidvalidity=mb.uidvalidity,
        highestmodseq=mb.highestmodseq,
    )


def snapshot(
    conn: sqlite3.Connection,
    mailbox_id: int,
    cache: SnapshotCache | None = None,
    recent: snapshots.Recent | None = None,
) -> Snapshot:
    """UIDs, modseqs and flags of a mailbox; see :mod:`mailcore.mailstore.snapshots`."""
    snap = snapshots.snapshot(conn, mailbox_id, cache, recent)
    assert snap is not None  # only cached_only=True gives None
    return snap


def load_parsed(
    conn: sqlite3.Connection, file_ids: Sequence[int]
) -> dict[int, message.ParsedMessage]:
    out: dict[int, message.ParsedMessage] = {}
    wanted = sorted(set(file_ids))
    for i in range(0, len(wanted), 500):
        part = wanted[i : i + 500]
        marks = ",".join("?" * len(part))
        for fid, blob in conn.execute(f"SELECT id, parsed FROM files WHERE id IN ({marks})", part):  # noqa: S608 (placeholders only)
            try:
                out[fid] = message.loads(blob)
            except (ValueError, TypeError, IndexError, KeyError):
                log.warning("unreadable parse cache", file_id=fid)
    return out


def fetch(
    conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int], parsed: bool
) -> list[MessageRecord]:
    mailboxes.by_id(conn, mailbox_id)
    rows = select_uids(
        conn, "uid, modseq, flags, internal_date, size, file_id, save_date", mailbox_id, uids
    )
    cache = load_parsed(conn, [r[5] for r in rows]) if parsed else {}
    decode = flagset.decode
    return [
        MessageRecord(
            mailbox_id=mailbox_id,
            uid=r[0],
            modseq=r[1],
            flags=decode(r[2]),
            internal_date=r[3],
            size=r[4],
            parsed=cache.get(r[5]),
            file_id=r[5],
            save_date=r[6],
        )
        for r in rows
    ]


def expunged_since(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, modseq),
        )
    ]


def usage(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT usage_bytes, usage_messages FROM state WHERE id = 1").fetchone()
    return int(row[0]), int(row[1])
