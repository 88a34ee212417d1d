"""Split brain, mailboxes, the resolving store (splitboxes.py): it decides. A peer's
mailbox it merges is mapped (table ``mailbox_moves``: the peer's id, and, for the peer's
own mailbox, the negated id the peer uses once it set it aside, → the mailbox here): the
peer's appends to it are inserted at the end of that mailbox as this store's own records
(so they travel to the peer), and later flags and expunges follow them
(``mailbox_moved_uids``). The verdict itself is a ``mailbox-merge`` record
(records.MailboxMergeRecord), also this store's own. A peer's create, rename or delete
applied as it is goes back to the peer (an echo: the peer may have set the mailbox aside,
or may hold a create of ours of the same mailbox on its way).
"""

from __future__ import annotations

import json
import sqlite3

from mailcore.mailstore import mailboxes
from mailcore.mailstore.core import Txn
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.messages import REMOVE_COLUMNS, copy, remove, set_flags
from mailcore.mailstore.model import FlagOp
from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
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
    insert_theirs,
    made,
    mailbox_row,
    message_rows,
    own_create,
    own_since,
    same_mailbox,
)

RECOVERED = "Recovered"  # a deleted mailbox's new mail, when its name is not known any more
# mailbox_moved_uids.sha256 of a UID at which this store held its copy of another UID of
# the peer's: the peer's own append under that UID is another message (_came_again)
COPY = ""


def _target(conn: sqlite3.Connection, origin: str, mailbox_id: int) -> tuple[int, bool] | None:
    """(the mailbox here taking its messages, the peer's own) of a peer's mailbox merged."""
    row = conn.execute(
        "SELECT target, theirs FROM mailbox_moves WHERE origin = ? AND mailbox_id = ?",
        (origin, mailbox_id),
    ).fetchone()
    return (int(row[0]), bool(row[1])) if row is not None else None


def _map(t: Txn, origin: str, their_id: int, target: int, *, theirs: bool) -> None:
    """The peer's ``their_id`` (and, its own, the negated id it uses once it set it
    aside off the id) is merged into ``target``. A negated id is mapped alone: the peer
    set its mailbox aside off the id, which means a mailbox of this store there now."""
    ids = (their_id, -their_id) if theirs and their_id > 0 else (their_id,)
    t.conn.executemany(
        "INSERT OR REPLACE INTO mailbox_moves VALUES (?, ?, ?, ?)",
        [(origin, i, target, theirs) for i in ids],
    )


def _forget(t: Txn, origin: str, mailbox_id: int) -> None:
    """The peer's ``mailbox_id`` means this store's mailbox of that id from now on (its
    own one set aside is the negated id there)."""
    t.conn.execute(
        "DELETE FROM mailbox_moves WHERE origin = ? AND mailbox_id = ?", (origin, mailbox_id)
    )


def _key(mailbox_id: int, theirs: bool) -> int:
    """Where the moves of a peer's merged mailbox are kept (``mailbox_moved_uids``): the
    peer's own under its negated id (the same whether it uses the id or, set aside, the
    negated one), one both stores had under its id."""
    return -abs(mailbox_id) if theirs else mailbox_id


def _merge_into(
    t: Txn, res: Resolution, their_id: int, into: MailboxRow, text: str, *, theirs: bool = True
) -> bool:
    """The verdict: the peer's mailbox ``their_id`` is merged into ``into``."""
    before = t.state.change_seq
    t.log(MailboxMergeRecord(t.next_seq(), t.at, into.id, their_id, theirs))
    own_since(t, res, before)
    _map(t, res.origin, their_id, into.id, theirs=theirs)
    res.note("mailbox", text)
    return True


def _peer_created(t: Txn, rec: MailboxCreateRecord, res: Resolution) -> bool | None:
    o, y, s = res.origin, rec.mailbox_id, t.state
    s.last_mailbox_id = max(s.last_mailbox_id, y)  # neither is given out here now
    s.last_uidvalidity = max(s.last_uidvalidity, rec.uidvalidity)
    local = mailbox_row(t.conn, y)
    if local is not None and same_mailbox(t.conn, local, rec, o):
        _forget(t, o, y)  # sent again, or ours back: the peer gave up its own there
        return False
    if local is None and own_create(t.conn, rec):
        # ours, deleted here since, come back from the peer (which took it in place of a
        # mailbox of its own under the id, deleted or set aside): the id means ours there
        # from now on, and our delete is on its way to it
        _forget(t, o, y)
        return False
    if _target(t.conn, o, y) is not None:
        return False  # settled already (the record came again)
    creator = made(t.conn, y) if local is None else None
    if creator is not None and creator.origin == o:
        return False  # the peer's, applied here once and deleted since
    # a mailbox here has the id, or had it (ours, deleted since): the id is not the peer's
    clash = local is not None or creator is not None
    named = mailboxes.by_name(t.conn, rec.name)
    if named is not None:
        text = (
            f"mailbox {rec.name!r} made on both sides: the peer's (id {y}) merged into {named.id}"
        )
        return _merge_into(t, res, y, named, text)
    if not clash:
        res.echo = True  # settled as it is: the peer may have set it aside meanwhile
        return None
    before = t.state.change_seq
    made_here = mailboxes.insert_row(t, rec.name, rec.special_use)  # new id and UIDVALIDITY
    own_since(t, res, before)
    text = f"mailbox {rec.name!r}: the peer's id {y} is another mailbox here, now {made_here.id}"
    return _merge_into(t, res, y, made_here, text)


def _peer_renamed(t: Txn, rec: MailboxRenameRecord, res: Resolution, mb: MailboxRow) -> bool | None:
    other = mailboxes.by_name(t.conn, rec.new_name)
    if other is None or other.id == mb.id:
        res.echo = True  # settled as it is (splitbrain: concurrent renames)
        return None
    # renamed onto a name a mailbox here has: one mailbox of that name, holding both
    before = t.state.change_seq
    t.log(MailboxMergeRecord(t.next_seq(), t.at, other.id, mb.id, False))
    shas = {
        u: (sha or b"").hex()
        for u, sha in t.conn.execute(
            "SELECT uid, sha256 FROM messages WHERE mailbox_id = ?", (mb.id,)
        )
    }
    moved = dict(copy(t, mb, sorted(shas), other, move=True, quota=None).mapping)
    collided = t.conn.execute(
        "SELECT uid, new_uid FROM uid_moves WHERE mailbox_id = ? AND origin = ?",
        (mb.id, res.origin),
    ).fetchall()
    # a UID here that holds our copy of another UID of the peer's (a collision): the
    # peer's own message under it, if one comes, is another message, not this one
    # (splitbrain._copy_at: equal bytes there too when copied within the mailbox)
    copies = {n for u, n in collided if n is not None and n != u}
    pairs = {u: (n, shas[u] if u not in copies else COPY) for u, n in moved.items()}
    pairs |= {
        u: (moved.get(n), shas.get(n)) if n is not None else (None, None) for u, n in collided
    }
    t.conn.executemany(
        "INSERT OR REPLACE INTO mailbox_moved_uids VALUES (?, ?, ?, ?, ?)",
        [(res.origin, mb.id, u, n, sha) for u, (n, sha) in pairs.items()],
    )
    for u, n in sorted(moved.items()):  # the peer drains exactly these (after the appends)
        t.log(UidMergeRecord(t.next_seq(), t.at, other.id, mb.id, False, u, n))
    for u, (n, _) in sorted(pairs.items()):
        if n is not None and u not in moved:  # its message collided here: under ``n`` now
            t.log(UidMergeRecord(t.next_seq(), t.at, other.id, mb.id, False, u, n))
    drop_mailbox(t, mb, ())
    _retarget(t, mb.id, other.id, moved)
    own_since(t, res, before)
    _map(t, res.origin, mb.id, other.id, theirs=False)
    res.note(
        "mailbox",
        f"mailbox {mb.name!r} renamed {rec.new_name!r} on the peer, a name mailbox {other.id}"
        f" has here: merged into it ({len(shas)} messages)",
    )
    return True


def _retarget(t: Txn, old: int, new: int, moved: dict[int, int]) -> None:
    """Mailbox ``old``, into which peer mailboxes were merged, merged into ``new`` (its
    UIDs ``moved``): their messages are followed there."""
    rows = t.conn.execute(
        "SELECT origin, mailbox_id, theirs FROM mailbox_moves WHERE target = ?", (old,)
    ).fetchall()
    known = {(origin, mid) for origin, mid, _ in rows}
    for origin, mid, theirs in rows:
        if mid < 0 and (origin, -mid) in known:
            continue  # told under its id (the deferring store finds it under either)
        # the deferring store follows its mailbox there; one it set aside off its id,
        # whose id means a mailbox of ours now (_forget), under the negated id: without
        # that verdict it kept waiting for its messages in the old target, and a message
        # written into it since stayed there, the mailbox with it (on that side only)
        t.log(MailboxMergeRecord(t.next_seq(), t.at, new, mid, bool(theirs)))
        key = _key(mid, bool(theirs))
        rows = t.conn.execute(
            "SELECT uid, new_uid FROM mailbox_moved_uids WHERE origin = ? AND mailbox_id = ?",
            (origin, key),
        ).fetchall()
        t.conn.executemany(
            "UPDATE mailbox_moved_uids SET new_uid = ? WHERE origin = ? AND mailbox_id = ?"
            " AND uid = ?",
            [(moved.get(n) if n is not None else None, origin, key, u) for u, n in rows],
        )
        for u, n in sorted(rows):  # the peer drains its message when this copy is there
            if n is not None and n in moved:
                t.log(UidMergeRecord(t.next_seq(), t.at, new, mid, bool(theirs), u, moved[n]))
    t.conn.execute("UPDATE mailbox_moves SET target = ? WHERE target = ?", (new, old))


def _peer_deleted(t: Txn, rec: MailboxDeleteRecord, res: Resolution, mb: MailboxRow) -> bool | None:
    if not expunge_known(t, rec, mb, res):
        # deleted here too, and back to the peer: a create of ours on its way there (the
        # same mailbox made on both sides) must not bring it back there
        res.echo = True
        return None
    # what the peer never saw stays: the mailbox lives on, told to the peer again
    mb = mailboxes.by_id(t.conn, mb.id)
    rows = message_rows(t.conn, mb.id)
    before = t.state.change_seq
    modseq = t.modseq()
    t.log(
        MailboxCreateRecord(
            t.next_seq(), t.at, mb.id, mb.name, mb.special_use, mb.uidvalidity, mb.uidnext, modseq
        )
    )
    append_records(t, mb, rows)
    own_since(t, res, before)
    res.note(
        "deleted",
        f"mailbox {mb.name!r} deleted on the peer: kept with the {len(rows)} messages"
        " the peer never saw",
    )
    return True


def _deleted_name(conn: sqlite3.Connection, mailbox_id: int) -> str:
    """The name a mailbox deleted here had (its newest record that names it)."""
    row = conn.execute(
        "SELECT kind, data FROM journal WHERE mailbox_id = ?"
        " AND kind IN ('mailbox-delete', 'mailbox-rename', 'mailbox-create')"
        " ORDER BY seq DESC LIMIT 1",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        return RECOVERED
    values = json.loads(row[1])
    return str(values[1] if row[0] == "mailbox-rename" else values[0])  # new_name, or name


def _into_deleted(
    t: Txn,
    rec: Record,
    data: bytes | None,
    res: Resolution,
    gone: tuple[int, bool] | None = None,
) -> bool:
    """The peer wrote into a mailbox deleted here (``gone``: the one its mailbox was
    merged into, deleted since, and whether its mailbox is its own): its new mail comes
    into the mailbox of that name, made again when there is none."""
    mid = mailbox_of(rec)
    assert mid is not None
    if not isinstance(rec, AppendRecord) or data is None:  # (None: gone there too)
        res.note("deleted", f"mailbox {mid} deleted here: the peer's {rec.kind} record dropped")
        if isinstance(rec, AppendRecord) and gone is None and mid > 0:
            return _deleted_again(t, rec, res)
        return False
    name = _deleted_name(t.conn, mid if gone is None else gone[0])
    into = mailboxes.by_name(t.conn, name)
    if into is None:
        before = t.state.change_seq
        into = mailboxes.create(t, name)
        own_since(t, res, before)
    text = f"mailbox {mid} deleted here, written on the peer: its new mail goes to {name!r}"
    theirs = gone is not None and gone[1]
    if gone is not None:  # what went into the mailbox deleted here went with it
        t.conn.execute(
            "UPDATE mailbox_moved_uids SET new_uid = NULL WHERE origin = ? AND mailbox_id = ?",
            (res.origin, _key(mid, theirs)),
        )
    _merge_into(t, res, mid, into, text, theirs=theirs)
    return _into_target(t, rec, data, res, into.id, theirs=theirs)


def _deleted_again(t: Txn, rec: AppendRecord, res: Resolution) -> bool:
    """The peer took a message into a mailbox deleted here and expunged it since: the
    delete is told again, naming that UID. The peer kept the mailbox set aside for the
    mail this store never saw (splitpark.py): it goes there once nothing else is left,
    as no verdict comes for it (what is left comes here, and gets one)."""
    before = t.state.change_seq
    name = _deleted_name(t.conn, rec.mailbox_id)
    t.log(MailboxDeleteRecord(t.next_seq(), t.at, rec.mailbox_id, name, t.modseq(), (rec.uid,)))
    own_since(t, res, before)
    return True


def _moved_uid(t: Txn, origin: str, key: int, uid: int) -> tuple[int | None, ...]:
    """``(new_uid,)`` where the peer's message ``uid`` went (``key``: of its mailbox,
    :func:`_key`), else ``()``."""
    row = t.conn.execute(
        "SELECT new_uid FROM mailbox_moved_uids WHERE origin = ? AND mailbox_id = ? AND uid = ?",
        (origin, key, uid),
    ).fetchone()
    return (row[0],) if row is not None else ()


def renumbered(t: Txn, mailbox_id: int, uid: int, new_uid: int) -> None:
    """Resolver: a message of ``mailbox_id`` moved from ``uid`` to ``new_uid`` (a UID
    collision, splitbrain.py): a peer's message merged into it there is followed."""
    followed = t.conn.execute(
        "SELECT DISTINCT m.mailbox_id, m.uid, v.theirs FROM mailbox_moved_uids m"
        " JOIN mailbox_moves v ON v.origin = m.origin"
        " AND m.mailbox_id = CASE WHEN v.theirs THEN -abs(v.mailbox_id) ELSE v.mailbox_id END"
        " WHERE v.target = ? AND m.new_uid = ? ORDER BY m.mailbox_id, m.uid",
        (mailbox_id, uid),
    ).fetchall()
    t.conn.execute(
        "UPDATE mailbox_moved_uids SET new_uid = ? WHERE new_uid = ? AND (origin, mailbox_id)"
        " IN (SELECT origin, CASE WHEN theirs THEN -abs(mailbox_id) ELSE mailbox_id END"
        " FROM mailbox_moves WHERE target = ?)",
        (new_uid, uid, mailbox_id),
    )
    for key, peer_uid, theirs in followed:  # the peer drains its message by this copy
        t.log(UidMergeRecord(t.next_seq(), t.at, mailbox_id, key, bool(theirs), peer_uid, new_uid))


def _came_again(t: Txn, origin: str, key: int, rec: AppendRecord) -> bool:
    """The peer's append went into the target already (not: the peer's own message under
    a UID a message merged from here had too)."""
    row = t.conn.execute(
        "SELECT sha256 FROM mailbox_moved_uids WHERE origin = ? AND mailbox_id = ? AND uid = ?",
        (origin, key, rec.uid),
    ).fetchone()
    return row is not None and row[0] in (None, rec.sha256)


def _into_target(
    t: Txn, rec: Record, data: bytes | None, res: Resolution, target: int, *, theirs: bool
) -> bool:
    """A record about a peer's mailbox merged into ``target``, applied there."""
    into = mailbox_row(t.conn, target)
    mid = mailbox_of(rec)
    if mid is None:
        return False
    if into is None:  # deleted here since
        return _into_deleted(t, rec, data, res, gone=(target, theirs))
    their_id, mid = mid, _key(mid, theirs)
    before = t.state.change_seq
    if isinstance(rec, AppendRecord):
        if _came_again(t, res.origin, mid, rec):
            return False
        new = None
        if data is not None:
            # the peer drains exactly that message of the mailbox it set aside, told
            # ahead of the copy's append (as uid-move: splitbrain.py)
            (told,) = t.conn.execute(
                "SELECT uidnext FROM mailboxes WHERE id = ?", (into.id,)
            ).fetchone()
            t.log(UidMergeRecord(t.next_seq(), t.at, into.id, their_id, theirs, rec.uid, told))
            new = insert_theirs(t, into, rec, data)
            if new != told:  # the record would name another message: roll back
                raise RuntimeError(f"uid-merge told UID {told}, the copy went to UID {new}")
        t.conn.execute(
            "INSERT OR REPLACE INTO mailbox_moved_uids VALUES (?, ?, ?, ?, ?)",
            (res.origin, mid, rec.uid, new, rec.sha256),
        )
        own_since(t, res, before)
        return True
    if isinstance(rec, FlagsRecord):
        moved = _moved_uid(t, res.origin, mid, rec.uid)
        if not moved or moved[0] is None:
            return False
        done = set_flags(t, into, [moved[0]], FlagOp.REPLACE, rec.flags, unchanged_since=None)
        own_since(t, res, before)
        return bool(done.changed)
    if isinstance(rec, ExpungeRecord | MailboxDeleteRecord):
        rows = []
        for uid in rec.uids:
            moved = _moved_uid(t, res.origin, mid, uid)
            if moved and moved[0] is not None:
                rows += t.conn.execute(
                    f"SELECT {REMOVE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid = ?",  # noqa: S608
                    (into.id, moved[0]),
                ).fetchall()
        remove(t, into, rows, free=True)
        own_since(t, res, before)
        return bool(rows)
    return False  # a rename, a UIDNEXT: the mailbox here keeps its own


def resolve(t: Txn, rec: Record, data: bytes | None, res: Resolution) -> Record | bool | None:
    if isinstance(rec, MailboxCreateRecord):
        return _peer_created(t, rec, res)
    if isinstance(rec, MailboxMergeRecord):
        return False  # a verdict: only the resolver gives them
    mid = mailbox_of(rec)
    if mid is None:
        return None
    target = _target(t.conn, res.origin, mid)
    if target is not None:
        return _into_target(t, rec, data, res, target[0], theirs=target[1])
    mb = mailbox_row(t.conn, mid)
    if mb is None:
        return _into_deleted(t, rec, data, res)
    if isinstance(rec, MailboxRenameRecord):
        return _peer_renamed(t, rec, res, mb)
    if isinstance(rec, MailboxDeleteRecord):
        return _peer_deleted(t, rec, res, mb)
    return None


__all__ = ["RECOVERED", "renumbered", "resolve"]
