"""What the split-brain resolvers share (splitbrain.py: UIDs and flags; splitboxes.py:
mailboxes, both roles): the :class:`Resolution` of one peer record, the writes they make,
and what they ask of the index about a mailbox."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from typing import NamedTuple

from mailcore import message
from mailcore.mailstore import flags as flagset
from mailcore.mailstore import mailboxes, searchdata
from mailcore.mailstore.core import Txn
from mailcore.mailstore.mailboxes import COLUMNS, MailboxRow
from mailcore.mailstore.messages import NewMessage, insert
from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
)

# a message row as append_records() takes it
ROW_COLUMNS = "uid, modseq, flags, internal_date, size, file_id, sha256"


@dataclass
class Resolution:
    """One record's apply: who resolves, and what was resolved (for logs and metrics)."""

    origin: str  # the peer the record came from
    resolver: bool  # True: this store gives out the new UIDs and mailbox ids
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    own: list[int] = field(default_factory=list)  # journal seqs that are this store's own
    echoed: list[int] = field(default_factory=list)  # the peer's records sent back to it
    drop_data: bool = False  # apply an append as already expunged here
    applied: bool = False  # something changed here
    echo: bool = False  # the record replica apply writes next goes back to the peer (echoed)

    def note(self, kind: str, text: str) -> None:
        self.notes.append((kind, text))


def own_since(t: Txn, res: Resolution, before: int) -> None:
    """The records written in ``t`` after ``before`` are this store's own: they travel to
    the peer."""
    res.own.extend(range(before + 1, t.state.change_seq + 1))


def insert_theirs(t: Txn, mb: MailboxRow, rec: AppendRecord, data: bytes) -> int:
    """The peer's message ``rec`` (bytes ``data``) at the end of ``mb``: its new UID."""
    parsed = message.parse(data)
    (fid,) = t.write_files([data])
    t.conn.execute("INSERT INTO files VALUES (?, ?, ?)", (fid, len(data), message.dumps(parsed)))
    new = NewMessage(
        fid,
        rec.flags,
        rec.internal_date,
        len(data),
        searchdata.of(parsed, data),
        hashlib.sha256(data).digest(),
        rec.delivery_key,
    )
    (uid,) = insert(t, mb, [new], mailbox_keywords=False)
    if rec.delivery_key is not None:
        t.conn.execute(
            "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?)",
            (rec.delivery_key, mb.id, uid, rec.at),
        )
    return uid


def append_records(t: Txn, mb: MailboxRow, rows: list[tuple]) -> None:
    """Journal an append record for each message of ``mb`` already stored here (rows of
    :data:`ROW_COLUMNS`): the mailbox told again, e.g. to a peer that deleted it, or
    under the new id of a mailbox set aside."""
    for uid, modseq, flags, internal_date, size, file_id, sha in rows:
        key = t.conn.execute(
            "SELECT key FROM deliveries WHERE mailbox_id = ? AND uid = ?", (mb.id, uid)
        ).fetchone()
        t.log(
            AppendRecord(
                t.next_seq(),
                t.at,
                mb.id,
                mb.uidvalidity,
                uid,
                modseq,
                internal_date,
                size,
                (sha or b"").hex(),
                file_id,
                flagset.decode(flags),
                key[0] if key is not None else None,
            )
        )


ECHO = "~"  # journal_origin of a peer's record sent back to it: "~" + the peer


# --- mailboxes ---------------------------------------------------------------------------


def mailbox_row(conn: sqlite3.Connection, mailbox_id: int) -> MailboxRow | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM mailboxes WHERE id = ?",  # noqa: S608 (constants)
        (mailbox_id,),
    ).fetchone()
    return MailboxRow(*row) if row is not None else None


class Creator(NamedTuple):
    """The newest create record of a mailbox id in this store's journal."""

    name: str
    origin: str | None  # where it came from (None: this store's own)
    uidvalidity: int
    modseq: int


def made(conn: sqlite3.Connection, mailbox_id: int) -> Creator | None:
    """The newest create record of ``mailbox_id``; None when the journal no longer has
    one."""
    row = conn.execute(
        "SELECT json_extract(j.data, '$[0]'), o.origin, json_extract(j.data, '$[2]'),"
        " json_extract(j.data, '$[4]') FROM journal j LEFT JOIN journal_origin o ON o.seq = j.seq"
        " WHERE j.kind = 'mailbox-create' AND j.mailbox_id = ? ORDER BY j.seq DESC LIMIT 1",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        return None
    origin = row[1].removeprefix(ECHO) if row[1] is not None else None
    return Creator(str(row[0]), origin, int(row[2]), int(row[3]))


def own_create(conn: sqlite3.Connection, rec: MailboxCreateRecord) -> bool:
    """``rec`` is this store's own create record of the mailbox come back from the peer
    (an echo: same name, UIDVALIDITY and modseq; a mailbox told again has a new modseq)."""
    c = made(conn, rec.mailbox_id)
    return c == Creator(rec.name, None, rec.uidvalidity, rec.modseq)


def same_mailbox(
    conn: sqlite3.Connection, mb: MailboxRow, rec: MailboxCreateRecord, origin: str
) -> bool:
    """``origin``'s ``rec`` creates ``mb`` (sent again, or told again): same id and
    UIDVALIDITY, and ``mb`` came from ``origin`` or was made here under the same name
    (two stores can give one UIDVALIDITY in the same second: two mailboxes then)."""
    if mb.uidvalidity != rec.uidvalidity:
        return False
    creator = made(conn, mb.id)
    return creator is None or creator.origin == origin or creator.name == rec.name


def message_rows(conn: sqlite3.Connection, mailbox_id: int) -> list[tuple]:
    return conn.execute(
        f"SELECT {ROW_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",  # noqa: S608
        (mailbox_id,),
    ).fetchall()


def drop_mailbox(t: Txn, mb: MailboxRow, uids: tuple[int, ...]) -> None:
    mailboxes.drop_messages(t, mb.id)
    t.conn.execute("DELETE FROM mailboxes WHERE id = ?", (mb.id,))
    t.log(MailboxDeleteRecord(t.next_seq(), t.at, mb.id, mb.name, t.modseq(), uids))


def expunge_known(t: Txn, rec: MailboxDeleteRecord, mb: MailboxRow, res: Resolution) -> int:
    """The messages a peer's delete lists go, as a peer's expunge of them would (UIDs
    moved in a collision followed); how many messages are left."""
    from mailcore.mailstore import replica  # here: replica imports this module

    if rec.uids:
        replica.apply(t, ExpungeRecord(rec.seq, rec.at, mb.id, rec.uids, rec.modseq), None, res)
    (left,) = t.conn.execute(
        "SELECT count(*) FROM messages WHERE mailbox_id = ?", (mb.id,)
    ).fetchone()
    return int(left)


__all__ = [
    "ECHO",
    "ROW_COLUMNS",
    "Creator",
    "Resolution",
    "append_records",
    "drop_mailbox",
    "expunge_known",
    "insert_theirs",
    "made",
    "mailbox_row",
    "message_rows",
    "own_create",
    "own_since",
    "same_mailbox",
]
