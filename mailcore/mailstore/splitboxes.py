"""Split brain, mailboxes: a peer's record about a mailbox that collides with what this
store did to its mailboxes while the link was cut. Called first by splitbrain.intercept
(UIDs and flags come after), with the same two roles: the *resolver* (the node whose
name sorts first) decides, the *deferring* store sets its own mailbox aside until the
resolver's verdict comes and then follows it; neither ever drops a message.

Outcomes (docs/mirror.md "Split brain"):

* **One name, one mailbox.** A mailbox created on both sides under one name, or renamed
  on one side onto a name the other side gave a mailbox, ends as the resolver's mailbox
  (its id and UIDVALIDITY) holding both: the other mailbox's messages move into it under
  new UIDs at its end, on both sides. The deferring side's clients see its copy go (and
  its messages come again in the resolver's mailbox): a UIDVALIDITY change for them.
* **Two mailboxes, one id** (created on both sides under different names): the
  deferring side's mailbox gets a new id and UIDVALIDITY from the resolver, its messages
  new UIDs.
* **Deleted on one side, written on the other**: the messages the deleting side knew of
  (the UIDs its delete record lists) go; what it never saw stays: if the resolver took
  it, the mailbox lives on (same id and UIDVALIDITY: it is sent again to the deleting
  peer); if the deferring side took it, it comes back in a mailbox of the old name
  (made by the resolver when no mailbox has that name any more).

How, per role:

* **Resolver.** A peer's mailbox it merges is mapped (table ``mailbox_moves``: the
  peer's id, and the negated id the peer uses once it set the mailbox aside, → the
  mailbox here): the peer's appends to it are inserted at the end of that mailbox as
  this store's own records (so they travel to the peer), and later flags and expunges
  follow them (``mailbox_moved_uids``). The verdict itself is a ``mailbox-merge`` record
  (records.MailboxMergeRecord), also this store's own. A peer's create or rename applied
  as it is goes back to the peer (an echo: the peer may have set the mailbox aside).
* **Deferring store.** The resolver's record is applied, after a mailbox of its own
  that holds the id or the name is set aside (table ``mailbox_parked``): off the id to
  the negated id, off the name to ``<name> (merging)``; a resolver's delete of a mailbox
  this store took new mail into leaves it in place. Nothing of it is sent to the
  resolver (which decides from the records it already has), except the resolver's own
  create once this store gave up that id: it tells the resolver that the id means its
  mailbox from then on. On the verdict (``mailbox-merge``) each message of the parked
  mailbox goes when the resolver's copy of it arrives in the merged mailbox, and the
  parked mailbox goes when empty; an echo of its own create or rename puts it back.
  Records of the resolver about a mailbox deleted here are dropped: what of them is new
  to this store comes again from the resolver as above.

Each resolution is noted (kinds ``mailbox``, ``deleted``, ``parked``) for the mirror to
log and count.
"""

from __future__ import annotations

import json
import sqlite3

from mailcore.mailstore import mailboxes
from mailcore.mailstore.core import Txn
from mailcore.mailstore.mailboxes import COLUMNS, MailboxRow
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
    mailbox_of,
)
from mailcore.mailstore.resolution import (
    ECHO,
    ROW_COLUMNS,
    Resolution,
    append_records,
    insert_theirs,
    own_since,
)

RECOVERED = "Recovered"  # a deleted mailbox's new mail, when its name is not known any more
PARKED = " (merging)"  # the deferring side's mailbox set aside off a name


def _row(conn: sqlite3.Connection, mailbox_id: int) -> MailboxRow | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM mailboxes WHERE id = ?",  # noqa: S608 (constants)
        (mailbox_id,),
    ).fetchone()
    return MailboxRow(*row) if row is not None else None


def _made(conn: sqlite3.Connection, mailbox_id: int) -> tuple[str, str | None] | None:
    """The name the newest create record of ``mailbox_id`` gave it and where that record
    came from (None: this store's own); None when the journal no longer has one."""
    row = conn.execute(
        "SELECT json_extract(j.data, '$[0]'), o.origin FROM journal j"
        " LEFT JOIN journal_origin o ON o.seq = j.seq"
        " WHERE j.kind = 'mailbox-create' AND j.mailbox_id = ? ORDER BY j.seq DESC LIMIT 1",
        (mailbox_id,),
    ).fetchone()
    if row is None:
        return None
    return str(row[0]), row[1].removeprefix(ECHO) if row[1] is not None else None


def _same(conn: sqlite3.Connection, mb: MailboxRow, rec: MailboxCreateRecord, origin: str) -> bool:
    """``origin``'s ``rec`` creates ``mb`` (sent again, or told again): same id and
    UIDVALIDITY, and ``mb`` came from ``origin`` or was made here under the same name
    (two stores can give one UIDVALIDITY in the same second: two mailboxes then)."""
    if mb.uidvalidity != rec.uidvalidity:
        return False
    made = _made(conn, mb.id)
    return made is None or made[1] == origin or made[0] == rec.name


def _rows(conn: sqlite3.Connection, mailbox_id: int) -> list[tuple]:
    return conn.execute(
        f"SELECT {ROW_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",  # noqa: S608
        (mailbox_id,),
    ).fetchall()


def _drop_mailbox(t: Txn, mb: MailboxRow, uids: tuple[int, ...]) -> None:
    mailboxes.drop_messages(t, mb.id)
    t.conn.execute("DELETE FROM mailboxes WHERE id = ?", (mb.id,))
    t.log(MailboxDeleteRecord(t.next_seq(), t.at, mb.id, mb.name, t.modseq(), uids))


def _expunge_known(t: Txn, rec: MailboxDeleteRecord, mb: MailboxRow, res: Resolution) -> int:
    """The messages a peer's delete lists go, as a peer's expunge of them would (UIDs
    moved in a collision followed); how many messages are left."""
    from mailcore.mailstore import replica  # here: replica imports this module

    if rec.uids:
        replica.apply(t, ExpungeRecord(rec.seq, rec.at, mb.id, rec.uids, rec.modseq), None, res)
    (left,) = t.conn.execute(
        "SELECT count(*) FROM messages WHERE mailbox_id = ?", (mb.id,)
    ).fetchone()
    return int(left)


# --- resolver ---------------------------------------------------------------------------


def _target(conn: sqlite3.Connection, origin: str, mailbox_id: int) -> tuple[int, bool] | None:
    """(the mailbox here taking its messages, the peer's own) of a peer's mailbox merged."""
    row = conn.execute(
        "SELECT target, theirs FROM mailbox_moves WHERE origin = ? AND mailbox_id = ?",
        (origin, mailbox_id),
    ).fetchone()
    return (int(row[0]), bool(row[1])) if row is not None else None


def _map(t: Txn, origin: str, their_id: int, target: int, *, theirs: bool) -> None:
    """The peer's ``their_id`` (and, its own, the negated id it uses once it set it
    aside off the id) is merged into ``target``."""
    ids = (their_id, -their_id) if theirs else (their_id,)
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
    local = _row(t.conn, y)
    if local is not None and _same(t.conn, local, rec, o):
        _forget(t, o, y)  # sent again, or ours back: the peer gave up its own there
        return False
    if _target(t.conn, o, y) is not None:
        return False  # settled already (the record came again)
    clash = False
    if local is not None:
        clash = True
    else:
        made = _made(t.conn, y)
        if made is not None and made[1] == o:
            return False  # the peer's, applied here once and deleted since
        clash = made is not None  # ours, deleted since: the id is not the peer's
    named = mailboxes.by_name(t.conn, rec.name)
    if named is not None:
        text = f"mailbox {rec.name!r} made on both sides: the peer's (id {y}) merged into {named.id}"
        return _merge_into(t, res, y, named, text)
    if not clash:
        res.echo = True  # settled as it is: the peer may have set it aside meanwhile
        return None
    before = t.state.change_seq
    made_here = mailboxes.insert_row(t, rec.name, rec.special_use)  # new id and UIDVALIDITY
    own_since(t, res, before)
    text = f"mailbox {rec.name!r}: the peer's id {y} is another mailbox here, now {made_here.id}"
    return _merge_into(t, res, y, made_here, text)


def _peer_renamed(
    t: Txn, rec: MailboxRenameRecord, res: Resolution, mb: MailboxRow
) -> bool | None:
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
    pairs = {u: (n, shas[u]) for u, n in moved.items()}
    pairs |= {u: (moved.get(n), shas.get(n)) if n is not None else (None, None) for u, n in collided}
    t.conn.executemany(
        "INSERT OR REPLACE INTO mailbox_moved_uids VALUES (?, ?, ?, ?, ?)",
        [(res.origin, mb.id, u, n, sha) for u, (n, sha) in pairs.items()],
    )
    _drop_mailbox(t, mb, ())
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
    for origin, mid, theirs in t.conn.execute(
        "SELECT origin, mailbox_id, theirs FROM mailbox_moves WHERE target = ? AND mailbox_id > 0",
        (old,),
    ).fetchall():
        # the deferring store follows its mailbox there
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
    t.conn.execute("UPDATE mailbox_moves SET target = ? WHERE target = ?", (new, old))


def _peer_deleted(
    t: Txn, rec: MailboxDeleteRecord, res: Resolution, mb: MailboxRow
) -> bool | None:
    if not _expunge_known(t, rec, mb, res):
        # deleted here too, and back to the peer: a create of ours on its way there (the
        # same mailbox made on both sides) must not bring it back there
        res.echo = True
        return None
    # what the peer never saw stays: the mailbox lives on, told to the peer again
    mb = mailboxes.by_id(t.conn, mb.id)
    rows = _rows(t.conn, mb.id)
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
    return _into_target(t, rec, data, res, into.id, theirs)


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
    t.conn.execute(
        "UPDATE mailbox_moved_uids SET new_uid = ? WHERE new_uid = ? AND (origin, mailbox_id)"
        " IN (SELECT origin, CASE WHEN theirs THEN -abs(mailbox_id) ELSE mailbox_id END"
        " FROM mailbox_moves WHERE target = ?)",
        (new_uid, uid, mailbox_id),
    )


def _came_again(t: Txn, origin: str, key: int, rec: AppendRecord) -> bool:
    """The peer's append went into the target already (not: the peer's own message under
    a UID a message merged from here had too)."""
    row = t.conn.execute(
        "SELECT sha256 FROM mailbox_moved_uids WHERE origin = ? AND mailbox_id = ? AND uid = ?",
        (origin, key, rec.uid),
    ).fetchone()
    return row is not None and row[0] in (None, rec.sha256)


def _into_target(
    t: Txn, rec: Record, data: bytes | None, res: Resolution, target: int, theirs: bool
) -> bool:
    """A record about a peer's mailbox merged into ``target``, applied there."""
    into = _row(t.conn, target)
    mid = mailbox_of(rec)
    if mid is None:
        return False
    if into is None:  # deleted here since
        return _into_deleted(t, rec, data, res, gone=(target, theirs))
    mid = _key(mid, theirs)
    before = t.state.change_seq
    if isinstance(rec, AppendRecord):
        if _came_again(t, res.origin, mid, rec):
            return False
        new = None
        if data is not None:
            new = insert_theirs(t, into, rec, data)
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


def _resolve(t: Txn, rec: Record, data: bytes | None, res: Resolution) -> Record | bool | None:
    if isinstance(rec, MailboxCreateRecord):
        return _peer_created(t, rec, res)
    if isinstance(rec, MailboxMergeRecord):
        return False  # a verdict: only the resolver gives them
    mid = mailbox_of(rec)
    if mid is None:
        return None
    target = _target(t.conn, res.origin, mid)
    if target is not None:
        return _into_target(t, rec, data, res, *target)
    mb = _row(t.conn, mid)
    if mb is None:
        return _into_deleted(t, rec, data, res)
    if isinstance(rec, MailboxRenameRecord):
        return _peer_renamed(t, rec, res, mb)
    if isinstance(rec, MailboxDeleteRecord):
        return _peer_deleted(t, rec, res, mb)
    return None


# --- deferring store --------------------------------------------------------------------


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
    rows = _rows(t.conn, mb.id)
    modseq = t.modseq()
    t.log(MailboxDeleteRecord(t.next_seq(), t.at, mb.id, mb.name, modseq, tuple(r[0] for r in rows)))
    for table in ("messages", "recent", "expunged", "deliveries", "uid_moves"):
        t.conn.execute(
            f"UPDATE {table} SET mailbox_id = ? WHERE mailbox_id = ?",  # noqa: S608 (constants)
            (new_id, mb.id),
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
    mb = _row(t.conn, local_id)
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
    local = _row(t.conn, rec.mailbox_id)
    if local is not None:
        if _same(t.conn, local, rec, res.origin):
            _unpark(t, res, local.id, None)  # ours come back, or sent again
            return False
        _park(t, res, local, off_id=True, off_name=False)
        res.echo = True  # to the resolver: our id means its mailbox from now on
    _make_room(t, res, rec.name, rec.mailbox_id)
    return None


def _resolver_deleted(
    t: Txn, rec: MailboxDeleteRecord, res: Resolution, mb: MailboxRow
) -> bool | None:
    left = _expunge_known(t, rec, mb, res)
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
        moved = _row(t.conn, -rec.from_id)
        if moved is not None:
            return moved
        if _made(t.conn, -rec.from_id) is not None:
            return None  # set aside off the id once, and gone since
    mb = _row(t.conn, rec.from_id)
    if mb is None:
        return None
    made = _made(t.conn, mb.id)
    if rec.theirs and made is not None and made[1] == origin:
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
    mb = _row(t.conn, local_id)
    if mb is None:
        return
    if t.conn.execute("SELECT 1 FROM messages WHERE mailbox_id = ? LIMIT 1", (mb.id,)).fetchone():
        return
    _drop_mailbox(t, mb, ())
    _unset_parked(t, res.origin, local_id)
    res.note("moved", f"mailbox {mb.name!r}: every message now in the peer's mailbox")


def drain(t: Txn, rec: AppendRecord, res: Resolution) -> None:
    """Deferring store, once the resolver's append is applied: if it is a message of a
    mailbox of ours merged into that one, our copy there goes (it lives on here); a
    mailbox of ours merged there goes once empty (emptied by a user here, too)."""
    parked = t.conn.execute(
        "SELECT local_id FROM mailbox_parked WHERE origin = ? AND target = ?",
        (res.origin, rec.mailbox_id),
    ).fetchall()
    sha = bytes.fromhex(rec.sha256)
    done = False
    for (local_id,) in parked:
        mb = _row(t.conn, local_id)
        found = t.conn.execute(
            f"SELECT {REMOVE_COLUMNS} FROM messages WHERE mailbox_id = ? AND sha256 = ?"  # noqa: S608
            " ORDER BY uid LIMIT 1",
            (local_id, sha),
        ).fetchall()
        if found and mb is not None and not done:
            remove(t, mb, found, free=True)
            done = True
        _drop_if_empty(t, res, local_id)


def _defer(t: Txn, rec: Record, res: Resolution) -> bool | None:
    if isinstance(rec, MailboxCreateRecord):
        return _resolver_created(t, rec, res)
    if isinstance(rec, MailboxMergeRecord):
        return _verdict(t, rec, res)
    mid = mailbox_of(rec)
    if mid is None:
        return None
    mb = _row(t.conn, mid)
    if mb is None:  # deleted here: what of it is new here comes again (the resolver's verdict)
        res.note("deleted", f"mailbox {mid} deleted here: the peer's {rec.kind} record dropped")
        return False
    if isinstance(rec, MailboxRenameRecord):
        _make_room(t, res, rec.new_name, mid)
        _unpark(t, res, mid, rec.new_name)  # the resolver named it: settled
        return None
    if isinstance(rec, MailboxDeleteRecord):
        return _resolver_deleted(t, rec, res, mb)
    return None


def intercept(t: Txn, rec: Record, data: bytes | None, res: Resolution) -> Record | bool | None:
    """Before the UID-level settling: the outcome when the record collides on a mailbox
    (True/False), or None to go on (side effects done: a mailbox set aside)."""
    if res.resolver:
        return _resolve(t, rec, data, res)
    return _defer(t, rec, res)


__all__ = ["PARKED", "RECOVERED", "drain", "intercept", "renumbered"]
