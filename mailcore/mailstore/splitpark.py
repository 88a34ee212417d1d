"""Split brain, mailboxes, the deferring store (splitboxes.py): it follows the
resolver's verdicts. The resolver's record is applied, after a mailbox of its own that
holds the id or the name is set aside (table ``mailbox_parked``): off the id to the
negated id, off the name to ``<name> (merging)``; a resolver's delete of a mailbox this
store took new mail into leaves it in place. Nothing of it is sent to the resolver (which
decides from the records it already has), except the resolver's own create once this
store gave up that id: it tells the resolver that the id means its mailbox from then on.
On the verdict (``mailbox-merge``) each message of the parked mailbox goes when the
resolver's copy of it arrives in the merged mailbox (which one, the resolver's
``uid-merge`` record says: never matched by bytes), and the parked mailbox goes when
empty; an echo of its own create or rename puts it back. Records of the resolver about a
mailbox deleted here are dropped: what of them is new to this store comes again from the
resolver.
"""

from __future__ import annotations

import sqlite3

from mailcore.mailstore import mailboxes
from mailcore.mailstore.core import Txn
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.messages import REMOVE_COLUMNS, remove
from mailcore.mailstore.records import (
    AppendRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxMergeRecord,
    MailboxRenameRecord,
    Record,
    UidMergeRecord,
    mailbox_of,
)
from mailcore.mailstore.resolution import (
    Resolution,
    append_records,
    drop_mailbox,
    expunge_known,
    made,
    mailbox_row,
    message_rows,
    own_create,
    same_mailbox,
)

PARKED = " (merging)"  # the deferring side's mailbox set aside off a name


def _parked(conn: sqlite3.Connection, origin: str, local_id: int) -> tuple | None:
    """(name when parked, target) of our mailbox ``local_id`` set aside, or None."""
    row: tuple | None = conn.execute(
        "SELECT name, target FROM mailbox_parked WHERE origin = ? AND local_id = ?",
        (origin, local_id),
    ).fetchone()
    return row


def _set_parked(t: Txn, origin: str, mb: MailboxRow) -> None:
    t.conn.execute(
        "INSERT OR IGNORE INTO mailbox_parked VALUES (?, ?, ?, NULL)", (origin, mb.id, mb.name)
    )


def _unset_parked(t: Txn, origin: str, local_id: int) -> None:
    t.conn.execute(
        "DELETE FROM mailbox_parked WHERE origin = ? AND local_id = ?", (origin, local_id)
    )


def _park(t: Txn, res: Resolution, mb: MailboxRow, *, off_id: bool, off_name: bool) -> None:
    """Set ``mb`` aside until the resolver's verdict: off its id (to the negated id: ours,
    the resolver knows it under the id it had), off its name."""
    _set_parked(t, res.origin, mb)
    if off_id:
        new_id = -mb.id
        _reid(t, mb, new_id)
        t.conn.execute(
            "UPDATE mailbox_parked SET local_id = ? WHERE origin = ? AND local_id = ?",
            (new_id, res.origin, mb.id),
        )
        res.note("parked", f"mailbox {mb.name!r}: id {mb.id} is the peer's, set aside")
        mb = mb._replace(id=new_id)
    if off_name:
        name = _free_name(t.conn, mb.name + PARKED)
        t.conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (name, mb.id))
        t.log(MailboxRenameRecord(t.next_seq(), t.at, mb.id, mb.name, name, t.modseq()))
        res.note("parked", f"mailbox {mb.name!r} is the peer's name: set aside as {name!r}")


def _free_name(conn: sqlite3.Connection, base: str) -> str:
    name, n = base, 1
    while mailboxes.by_name(conn, name) is not None:
        n += 1
        name = f"{base} {n}"
    return name


def _reid(t: Txn, mb: MailboxRow, new_id: int) -> None:
    """``mb`` under ``new_id``, told to this store's own readers (sessions, followers) as
    the mailbox deleted and made again with the same messages."""
    rows = message_rows(t.conn, mb.id)
    modseq = t.modseq()
    t.log(
        MailboxDeleteRecord(t.next_seq(), t.at, mb.id, mb.name, modseq, tuple(r[0] for r in rows))
    )
    for table in ("messages", "recent", "expunged", "deliveries", "uid_moves"):
        t.conn.execute(
            f"UPDATE {table} SET mailbox_id = ? WHERE mailbox_id = ?",  # noqa: S608 (constants)
            (new_id, mb.id),
        )
    t.conn.execute(
        "UPDATE mailbox_merged_uids SET local_id = ? WHERE local_id = ?", (new_id, mb.id)
    )
    t.conn.execute("UPDATE mailboxes SET id = ? WHERE id = ?", (new_id, mb.id))
    moved = mb._replace(id=new_id)
    t.log(
        MailboxCreateRecord(
            t.next_seq(), t.at, new_id, mb.name, mb.special_use, mb.uidvalidity, mb.uidnext, modseq
        )
    )
    append_records(t, moved, rows)


def _unpark(t: Txn, res: Resolution, local_id: int, name: str | None) -> None:
    """The resolver settled the mailbox as it is: it stays, under ``name`` (None: the
    name it had when set aside, when free)."""
    found = _parked(t.conn, res.origin, local_id)
    if found is None or found[1] is not None:
        return
    _unset_parked(t, res.origin, local_id)
    mb = mailbox_row(t.conn, local_id)
    if name is None and mb is not None and mailboxes.by_name(t.conn, found[0]) is None:
        t.conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (found[0], mb.id))
        t.log(MailboxRenameRecord(t.next_seq(), t.at, mb.id, mb.name, found[0], t.modseq()))
    res.note("parked", f"mailbox {found[0]!r}: settled by the peer as it is")


def _make_room(t: Txn, res: Resolution, name: str, mailbox_id: int) -> None:
    """The resolver's mailbox ``mailbox_id`` takes ``name``: ours of that name steps aside."""
    named = mailboxes.by_name(t.conn, name)
    if named is not None and named.id != mailbox_id:
        _park(t, res, named, off_id=False, off_name=True)


def _resolver_created(t: Txn, rec: MailboxCreateRecord, res: Resolution) -> bool | None:
    local = mailbox_row(t.conn, rec.mailbox_id)
    if local is not None:
        if same_mailbox(t.conn, local, rec, res.origin):
            _unpark(t, res, local.id, None)  # ours come back, or sent again
            return False
        _park(t, res, local, off_id=True, off_name=False)
        res.echo = True  # to the resolver: our id means its mailbox from now on
    else:
        if own_create(t.conn, rec):  # ours, deleted here since, sent back by the resolver:
            return False  # our delete is on its way there
        creator = made(t.conn, rec.mailbox_id)
        if creator is not None and creator.origin != res.origin:
            # a mailbox of ours had the id (deleted here since): the resolver may have
            # merged it into one of its own; from now on our id means its mailbox
            res.echo = True
    _make_room(t, res, rec.name, rec.mailbox_id)
    return None


def _resolver_deleted(
    t: Txn, rec: MailboxDeleteRecord, res: Resolution, mb: MailboxRow
) -> bool | None:
    left = expunge_known(t, rec, mb, res)
    if not left:
        _unset_parked(t, res.origin, mb.id)
        return None
    _set_parked(t, res.origin, mb)
    res.note(
        "parked",
        f"mailbox {mb.name!r} deleted on the peer: kept here with the {left} messages it"
        " never saw until they come again",
    )
    return True


def _ours(t: Txn, rec: MailboxMergeRecord, origin: str) -> MailboxRow | None:
    """The mailbox of ours a verdict is about: for one of ours the resolver never took
    as it is, under the id it had then (now negated, when set aside off it)."""
    if rec.theirs:
        # (the resolver names it by the negated id too, after records sent under it)
        moved = mailbox_row(t.conn, -abs(rec.from_id))
        if moved is not None:
            return moved
        if made(t.conn, -abs(rec.from_id)) is not None or rec.from_id < 0:
            return None  # set aside off the id once, and gone since
    mb = mailbox_row(t.conn, rec.from_id)
    if mb is None:
        return None
    creator = made(t.conn, mb.id)
    if rec.theirs and creator is not None and creator.origin == origin:
        return None  # ours is gone (deleted here): the id is the resolver's mailbox now
    return mb


def _verdict(t: Txn, rec: MailboxMergeRecord, res: Resolution) -> bool:
    mb = _ours(t, rec, res.origin)
    if mb is None:
        return False
    _set_parked(t, res.origin, mb)  # (if it was not set aside: renamed off the name since)
    t.conn.execute(
        "UPDATE mailbox_parked SET target = ? WHERE origin = ? AND local_id = ?",
        (rec.mailbox_id, res.origin, mb.id),
    )
    res.note("mailbox", f"mailbox {mb.name!r}: the peer merged it into mailbox {rec.mailbox_id}")
    _drop_if_empty(t, res, mb.id)
    return True


def _drop_if_empty(t: Txn, res: Resolution, local_id: int) -> None:
    mb = mailbox_row(t.conn, local_id)
    if mb is None:
        return
    if t.conn.execute("SELECT 1 FROM messages WHERE mailbox_id = ? LIMIT 1", (mb.id,)).fetchone():
        return
    drop_mailbox(t, mb, ())
    _unset_parked(t, res.origin, local_id)
    t.conn.execute(
        "DELETE FROM mailbox_merged_uids WHERE origin = ? AND local_id = ?",
        (res.origin, local_id),
    )
    res.note("moved", f"mailbox {mb.name!r}: every message now in the peer's mailbox")


def merged_uid(t: Txn, rec: UidMergeRecord, res: Resolution) -> bool:
    """Deferring store: the resolver holds our message ``rec.uid`` of the mailbox it
    merged (set aside here) under ``rec.new_uid`` in ``rec.mailbox_id``. Once that copy is
    here (already, or when its append comes: :func:`drain`) our message goes, that one
    and no other of the same bytes. Nothing else changes; a resolver ignores it."""
    if res.resolver:
        return False
    verdict = MailboxMergeRecord(rec.seq, rec.at, rec.mailbox_id, rec.from_id, rec.theirs)
    mb = _ours(t, verdict, res.origin)
    if mb is None or _parked(t.conn, res.origin, mb.id) is None:
        return False  # gone here, or never set aside: nothing of ours waits for it
    t.conn.execute(
        "INSERT OR IGNORE INTO mailbox_merged_uids VALUES (?, ?, ?, ?, ?)",
        (res.origin, rec.mailbox_id, rec.new_uid, mb.id, rec.uid),
    )
    here = t.conn.execute(
        "SELECT sha256 FROM messages WHERE mailbox_id = ? AND uid = ?",
        (rec.mailbox_id, rec.new_uid),
    ).fetchone()
    if here is not None:  # its append came first (a rename merged: splitmerge._peer_renamed)
        drain_copy(t, rec.mailbox_id, rec.new_uid, (here[0] or b"").hex(), res)
    return False


def drain(t: Txn, rec: AppendRecord, res: Resolution) -> None:
    """Deferring store, once the resolver's append is applied: if it is the copy of a
    message of a mailbox of ours merged into that one (its uid-merge record), our message
    goes (it lives on here); a mailbox of ours merged there goes once empty (emptied by a
    user here, too)."""
    drain_copy(t, rec.mailbox_id, rec.uid, rec.sha256, res)


def drain_copy(t: Txn, mailbox_id: int, new_uid: int, sha256: str, res: Resolution) -> None:
    """:func:`drain` for the resolver's message ``sha256`` (hex) at ``new_uid`` of
    ``mailbox_id``: also when it never lands here (expunged or moved on there under a UID
    that collided). Which message of ours it is the copy of, the resolver's uid-merge
    record says; bytes do not (the same bytes twice in a mailbox: a message copied or
    moved within it while cut, drained for the other one, was lost on both sides)."""
    mapped = t.conn.execute(
        "SELECT local_id, uid FROM mailbox_merged_uids WHERE origin = ? AND target = ?"
        " AND new_uid = ? ORDER BY uid",
        (res.origin, mailbox_id, new_uid),
    ).fetchall()
    sha = bytes.fromhex(sha256)
    for local_id, uid in mapped:
        mb = mailbox_row(t.conn, local_id)
        found = t.conn.execute(
            f"SELECT {REMOVE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid = ?"  # noqa: S608
            " AND sha256 = ?",
            (local_id, uid, sha),
        ).fetchall()
        if found and mb is not None:
            t.conn.execute(
                "DELETE FROM mailbox_merged_uids WHERE origin = ? AND target = ? AND new_uid = ?",
                (res.origin, mailbox_id, new_uid),
            )
            remove(t, mb, found, free=True)
            _drop_if_empty(t, res, local_id)
            break
    parked = t.conn.execute(
        "SELECT local_id FROM mailbox_parked WHERE origin = ? AND target = ?",
        (res.origin, mailbox_id),
    ).fetchall()
    for (local_id,) in parked:
        _drop_if_empty(t, res, local_id)


def _deleted_here(conn: sqlite3.Connection, mailbox_id: int) -> bool:
    """This store deleted the mailbox (its journal still says so)."""
    row = conn.execute(
        "SELECT 1 FROM journal WHERE kind = 'mailbox-delete' AND mailbox_id = ? LIMIT 1",
        (mailbox_id,),
    ).fetchone()
    return row is not None


def defer(t: Txn, rec: Record, res: Resolution) -> bool | None:
    if isinstance(rec, MailboxCreateRecord):
        return _resolver_created(t, rec, res)
    if isinstance(rec, MailboxMergeRecord):
        return _verdict(t, rec, res)
    mid = mailbox_of(rec)
    if mid is None:
        return None
    mb = mailbox_row(t.conn, mid)
    if mb is None:
        if not _deleted_here(t.conn, mid):
            return None  # never here: refused (ReplicaConflict), kept by the mirror
        if isinstance(rec, AppendRecord):
            # a message of a mailbox of ours merged into it: our copy goes all the same
            # (the resolver holds it, and tells it again if it keeps the mailbox, or it
            # was deleted there: data None)
            drain(t, rec, res)
        if not isinstance(rec, MailboxDeleteRecord):  # (a delete: ours, come back)
            # what of it is new to this store comes again from the resolver (its verdict)
            res.note("deleted", f"mailbox {mid} deleted here: the peer's {rec.kind} dropped")
        return False
    if isinstance(rec, MailboxRenameRecord):
        _make_room(t, res, rec.new_name, mid)
        _unpark(t, res, mid, rec.new_name)  # the resolver named it: settled
        return None
    if isinstance(rec, MailboxDeleteRecord):
        return _resolver_deleted(t, rec, res, mb)
    return None


__all__ = ["PARKED", "defer", "drain", "drain_copy", "merged_uid"]
