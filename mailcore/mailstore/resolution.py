"""What the split-brain resolvers share (splitbrain.py: UIDs and flags; splitboxes.py:
mailboxes): the :class:`Resolution` of one peer record, and the writes both make."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from mailcore import message
from mailcore.mailstore import flags as flagset
from mailcore.mailstore import searchdata
from mailcore.mailstore.core import Txn
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.messages import NewMessage, insert
from mailcore.mailstore.records import AppendRecord

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


__all__ = ["ECHO", "ROW_COLUMNS", "Resolution", "append_records", "insert_theirs", "own_since"]
