"""Split brain: a peer's record that collides with what this store did while the link
was cut, settled so that both stores reach the same state whichever applies first.

Two roles, fixed by the mirror (services/mirror/sink.py: the node whose name sorts
first resolves, the other defers), so no UID is ever chosen on both sides:

* **UID collision** (the peer's append names a UID this store used for another message —
  live, or expunged here since): as in Cyrus replication both messages get new UIDs at
  the end of the mailbox and the UID is expunged on both sides; UIDVALIDITY stays. The
  *resolving* store moves its own message to UIDNEXT, appends the peer's after it and
  journals all of it as its own records, so they travel to the peer. The *deferring*
  store ignores the resolver's append (it will come again under the new UID), notes the
  UID in ``uid_moves`` so that the resolver's records about the old UID (flags, expunge)
  are not applied to its own message there, and when its own message comes back from the
  resolver under the new UID it expunges the old one. Which append is that copy the
  resolver says in a ``uid-move`` record (the peer's old UID and the new one) written
  just before it, also when it moves the copy on again because the new UID collided on
  the peer too; bytes and order do not tell (the same bytes twice in a mailbox, the order
  changed by such a second move). A peer's append below UIDNEXT on a
  UID never used here (a late arrival) is renumbered the same way by the resolver, so a
  client never sees a new message under a UID lower than one it was shown.
* **Later records about a moved UID**: on the resolver the peer's flags and expunges are
  redirected to the new UID (as this store's own changes, so they travel back); on the
  deferring store they are dropped.
* **Flags**: the higher modseq wins (replica apply already keeps the newer flag set); on
  equal modseqs with different sets the resolver's set wins.
* **Concurrent renames** of one mailbox: the resolver's name wins. A mailbox renamed on one
  side and written on the other needs nothing: records name mailboxes by id. Mailboxes
  made on both sides, renamed onto a name the other side uses, or deleted on one side
  and written on the other: splitboxes.py, which sees every record first.
* **Expunged mail never comes back**: an expunge wins over any flag change; a message this
  store expunged is not taken back when it returns under a new UID.

Each resolution is noted in the :class:`Resolution` (kind and text) for the mirror to log
and count (``mirror_conflicts_total{kind}``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from typing import Any

from mailcore.mailstore import digest, mailboxes, splitboxes
from mailcore.mailstore import flags as flagset
from mailcore.mailstore.core import Txn
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.messages import REMOVE_COLUMNS, copy, remove, set_flags
from mailcore.mailstore.model import FlagOp
from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxRenameRecord,
    Record,
    UidMergeRecord,
    UidMoveRecord,
)
from mailcore.mailstore.resolution import ECHO, Resolution, insert_theirs, own_since

_FIELDS = [f.name for f in dataclasses.fields(AppendRecord) if f.name not in ("seq", "at")]
_FIELDS.remove("mailbox_id")
_UID_AT, _SHA_AT = _FIELDS.index("uid"), _FIELDS.index("sha256")  # in the journal's data
_OWN_SHA = (
    "SELECT data FROM journal WHERE kind = 'append' AND mailbox_id = ?"  # noqa: S608 (constant)
    f" AND json_extract(data, '$[{_UID_AT}]') = ? ORDER BY seq DESC LIMIT 1"
)


def _moved(
    conn: sqlite3.Connection, mailbox_id: int, uid: int, origin: str
) -> tuple[int | None, ...]:
    """``(new_uid,)`` when the peer's ``uid`` was moved (or deferred), else ``()``."""
    row = conn.execute(
        "SELECT new_uid FROM uid_moves WHERE mailbox_id = ? AND uid = ? AND origin = ?",
        (mailbox_id, uid, origin),
    ).fetchone()
    return (row[0],) if row is not None else ()


def _note_move(
    t: Txn,
    mailbox_id: int,
    uid: int,
    origin: str,
    new_uid: int | None,
    *,
    ours: str | None = None,
    theirs: str | None = None,
) -> None:
    t.conn.execute(
        "INSERT OR REPLACE INTO uid_moves VALUES (?, ?, ?, ?, ?, ?)",
        (mailbox_id, uid, origin, new_uid, ours, theirs),
    )


def _own_sha(conn: sqlite3.Connection, mailbox_id: int, uid: int) -> str | None:
    """The SHA-256 (hex) of the message this store last journalled at ``uid`` (None: the
    journal no longer has it)."""
    row = conn.execute(_OWN_SHA, (mailbox_id, uid)).fetchone()
    return str(json.loads(row[0])[_SHA_AT]) if row is not None else None


def _mailbox(t: Txn, mailbox_id: int) -> MailboxRow | None:
    row = t.conn.execute(
        f"SELECT {mailboxes.COLUMNS} FROM mailboxes WHERE id = ?",  # noqa: S608 (constants)
        (mailbox_id,),
    ).fetchone()
    return MailboxRow(*row) if row is not None else None


def _remove_uid(t: Txn, mb: MailboxRow, uid: int) -> None:
    """Expunge ``uid`` here as this store's own change (also when no message is there)."""
    rows = t.conn.execute(
        f"SELECT {REMOVE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid = ?",  # noqa: S608
        (mb.id, uid),
    ).fetchall()
    if rows:
        remove(t, mb, rows, free=True)
        return
    modseq = t.modseq()
    t.conn.execute("INSERT OR REPLACE INTO expunged VALUES (?, ?, ?)", (mb.id, uid, modseq))
    t.conn.execute(
        "UPDATE mailboxes SET highestmodseq = max(highestmodseq, ?) WHERE id = ?", (modseq, mb.id)
    )
    t.log(ExpungeRecord(t.next_seq(), t.at, mb.id, (uid,), modseq))


def _append(t: Txn, rec: AppendRecord, data: bytes | None, res: Resolution) -> bool | None:
    mb = _mailbox(t, rec.mailbox_id)
    if mb is None or mb.uidvalidity != rec.uidvalidity:
        return None  # replica apply reports the conflict
    conn, u = t.conn, rec.uid
    if _moved(conn, mb.id, u, res.origin):
        return False  # renumbered already (resolver) or coming under a new UID (deferring)
    if data is not None and hashlib.sha256(data).hexdigest() != rec.sha256:
        return None  # replica apply reports the conflict
    live = conn.execute(
        "SELECT sha256 FROM messages WHERE mailbox_id = ? AND uid = ?", (mb.id, u)
    ).fetchone()
    gone = conn.execute(
        "SELECT 1 FROM expunged WHERE mailbox_id = ? AND uid = ?", (mb.id, u)
    ).fetchone()
    own: str | None = None
    if live is not None:
        own = (live[0] or b"").hex()
        if own == rec.sha256 and not _copy_at(conn, mb.id, u, res.origin):
            return False
        kind = "uid"
    elif gone is not None:
        own = _own_sha(conn, mb.id, u)
        if own is None or (own == rec.sha256 and not _copy_at(conn, mb.id, u, res.origin)):
            return None  # the same message, expunged here: it never comes back
        kind = "uid"
    elif res.resolver and u < mb.uidnext:
        kind = "late"
    else:
        _deferred_copy_gone(t, mb, rec, res)
        return None
    if not res.resolver:
        _note_move(t, mb.id, u, res.origin, None, ours=own, theirs=rec.sha256)
        res.note("deferred", f"mailbox {mb.id} UID {u}: the peer gives both messages new UIDs")
        return False
    before = t.state.change_seq
    ours = None
    if live is not None:  # ours goes to the end first, then theirs
        # ours may be a peer's message renumbered onto ``u`` before: it moves on, and the
        # peer is told where (uid-move, ahead of the copy's append)
        told = _uidnext(conn, mb.id)
        _moved_on(t, mb.id, u, told)
        splitboxes.renumbered(t, mb.id, u, told)  # (uid-merge records, ahead of the copy)
        moved = copy(t, mb, [u], mb, move=True, quota=None)
        ours = moved.mapping[0][1]
        _check(told, ours)
    theirs = None
    if data is not None:
        new_uid = _uidnext(conn, mb.id)
        t.log(UidMoveRecord(t.next_seq(), t.at, mb.id, u, new_uid))
        theirs = insert_theirs(t, mb, rec, data)
        _check(new_uid, theirs)
    if kind == "late":
        _remove_uid(t, mb, u)
    _note_move(t, mb.id, u, res.origin, theirs)
    own_since(t, res, before)
    res.note(
        kind,
        f"mailbox {mb.id} UID {u}: ours → {ours}, the peer's → {theirs} (None: expunged already)",
    )
    return True


def _copy_at(conn: sqlite3.Connection, mailbox_id: int, uid: int, origin: str) -> bool:
    """``uid`` holds (resolver), or the resolver holds there (deferring store), the new
    copy of the deferring side's message of *another* UID: equal bytes at ``uid`` on both
    sides are then two messages (one moved or copied within the mailbox while cut), not
    one, and collide as any two would."""
    row = conn.execute(
        "SELECT 1 FROM uid_moves WHERE mailbox_id = ? AND origin = ? AND new_uid = ?"
        " AND uid != ? LIMIT 1",
        (mailbox_id, origin, uid, uid),
    ).fetchone()
    return row is not None


def _uidnext(conn: sqlite3.Connection, mailbox_id: int) -> int:
    """The UID the next message of the mailbox gets (messages.insert reads the same)."""
    row = conn.execute("SELECT uidnext FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    return int(row[0])


def _check(told: int, got: int) -> None:
    if told != got:  # the uid-move record would name another message: roll back
        raise RuntimeError(f"uid-move told UID {told}, the copy went to UID {got}")


def _moved_on(t: Txn, mailbox_id: int, uid: int, new_uid: int) -> None:
    """Resolver: the message at ``uid`` goes on to ``new_uid``; the peer's messages that
    were renumbered onto ``uid`` (their new copy collided on the peer too) are followed
    there, and the peer is told each one (``uid-move``, ahead of the copy's append)."""
    peer_uids = t.conn.execute(
        "SELECT uid FROM uid_moves WHERE mailbox_id = ? AND new_uid = ? ORDER BY uid",
        (mailbox_id, uid),
    ).fetchall()
    for (peer_uid,) in peer_uids:
        t.log(UidMoveRecord(t.next_seq(), t.at, mailbox_id, peer_uid, new_uid))
    t.conn.execute(
        "UPDATE uid_moves SET new_uid = ? WHERE mailbox_id = ? AND new_uid = ?",
        (new_uid, mailbox_id, uid),
    )


def _uid_move(t: Txn, rec: UidMoveRecord, res: Resolution) -> bool:
    """Deferring store: the resolver holds our message of collided UID ``rec.uid`` under
    ``rec.new_uid`` now; its append there is that message's copy (:func:`after_append`).
    Nothing changes in the mailbox; a resolver ignores the record (it gives them out)."""
    if not res.resolver:
        t.conn.execute(
            "UPDATE uid_moves SET new_uid = ? WHERE mailbox_id = ? AND uid = ? AND origin = ?",
            (rec.new_uid, rec.mailbox_id, rec.uid, res.origin),
        )
    return False


# Deferring store: our message under a UID that collided, whose copy the resolver's append
# at ``new_uid`` is: the resolver named both in a uid-move record just before that
# append (also when it moved the copy on again, because the new UID collided here too).
# Matched by bytes and order instead, the copy of a live message could be taken for the
# copy of an expunged one with the same bytes (a message moved within the mailbox, or out
# and back, while cut) when the order changed on the way: it was dropped here and lived
# on the resolver only. The plan starts from ``uid_moves`` (the collisions, usually none),
# never from the messages of the mailbox (a walk of the mailbox per applied append slowed
# a mirror's catch-up as the mailbox grew: bench W6).
_COPY_OF = (
    "SELECT uid, ours FROM uid_moves WHERE mailbox_id = ? AND origin = ? AND new_uid = ?"
    " AND ours IS NOT NULL ORDER BY uid LIMIT 1"
)


def _copy_of(
    conn: sqlite3.Connection, mailbox_id: int, origin: str, new_uid: int
) -> tuple[int, str] | None:
    """(our collided UID, the SHA-256 of our message there) whose copy the resolver holds
    at ``new_uid``; None when it is no copy of ours still waiting."""
    row = conn.execute(_COPY_OF, (mailbox_id, origin, new_uid)).fetchone()
    return (int(row[0]), str(row[1])) if row is not None else None


def _deferred_copy_gone(t: Txn, mb: MailboxRow, rec: AppendRecord, res: Resolution) -> None:
    """Deferring store: the resolver sends one of our messages under a new UID; if we
    expunged it meanwhile, it must not come back."""
    if res.resolver:
        return
    found = _copy_of(t.conn, mb.id, res.origin, rec.uid)
    if found is None or found[1] != rec.sha256:
        return
    uid, _ = found
    gone = t.conn.execute(
        "SELECT 1 FROM expunged WHERE mailbox_id = ? AND uid = ?", (mb.id, uid)
    ).fetchone()
    if gone is not None:
        res.drop_data = True
        res.note("expunged", f"mailbox {mb.id} UID {rec.uid}: expunged here as UID {uid}")


def after_append(t: Txn, rec: AppendRecord, res: Resolution, applied: bool) -> None:
    """Deferring store, once the resolver's append is applied: our own copy of that
    message under a collided UID is expunged (it lives on under the new UID), and so is
    our copy in a mailbox of ours the resolver merged into this one (splitboxes.py)."""
    if res.resolver:
        return
    if applied:
        splitboxes.drain(t, rec, res)
    mb = _mailbox(t, rec.mailbox_id)
    if mb is None:
        return
    rows = _take_own_copy(t, mb, res.origin, rec.uid, rec.sha256)
    if rows:
        _remove_own_copies(t, mb, rows, res.origin)
        res.note("moved", f"mailbox {mb.id}: UIDs {[r[0] for r in rows]} now UID {rec.uid}")


def _take_own_copy(t: Txn, mb: MailboxRow, origin: str, new_uid: int, sha256: str) -> list[Any]:
    """The row (:data:`REMOVE_COLUMNS`) of our message whose copy the resolver holds at
    ``new_uid`` (:data:`_COPY_OF`; the copy's bytes ``sha256``), to expunge; none when
    we expunged it already (its copy was dropped: :func:`_deferred_copy_gone`), and then
    the collided UID no longer waits for its copy. Other bytes than ours there: no copy
    of ours (nothing is taken: at worst a message twice, never one lost)."""
    found = _copy_of(t.conn, mb.id, origin, new_uid)
    if found is None or found[1] != sha256:
        return []
    own = found[0]
    rows = t.conn.execute(
        f"SELECT {REMOVE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid = ?"  # noqa: S608
        " AND sha256 = ?",
        (mb.id, own, bytes.fromhex(sha256)),
    ).fetchall()
    if not rows:
        t.conn.execute(
            "UPDATE uid_moves SET ours = NULL WHERE mailbox_id = ? AND uid = ? AND origin = ?",
            (mb.id, own, origin),
        )
    return rows


def _remove_own_copies(t: Txn, mb: MailboxRow, rows: list[Any], origin: str) -> None:
    """Deferring store: expunge our copies under collided UIDs (the message lives on, or
    was deleted, on the resolver); they no longer count as deleted by a user here."""
    remove(t, mb, rows, free=True)
    t.conn.executemany(
        "UPDATE uid_moves SET ours = NULL WHERE mailbox_id = ? AND uid = ? AND origin = ?",
        [(mb.id, r[0], origin) for r in rows],
    )


def _flags(t: Txn, rec: FlagsRecord, res: Resolution) -> bool | None:
    mb = _mailbox(t, rec.mailbox_id)
    if mb is None:
        return None
    moved = _moved(t.conn, mb.id, rec.uid, res.origin)
    if moved:
        (new_uid,) = moved
        if not res.resolver or new_uid is None:
            return False  # about the other message of a collided UID, or one gone
        before = t.state.change_seq
        done = set_flags(t, mb, [new_uid], FlagOp.REPLACE, rec.flags, unchanged_since=None)
        own_since(t, res, before)
        return bool(done.changed)
    row = t.conn.execute(
        "SELECT modseq, flags, sha256 FROM messages WHERE mailbox_id = ? AND uid = ?",
        (mb.id, rec.uid),
    ).fetchone()
    if row is None or row[0] != rec.modseq:
        return None  # replica apply: the higher modseq wins
    modseq, old, sha = row
    new = flagset.encode(rec.flags)
    if new == old:
        return False
    if res.resolver:
        res.note("flags", f"mailbox {mb.id} UID {rec.uid}: equal modseq {modseq}, ours kept")
        return False
    t.conn.execute(
        "UPDATE messages SET flags = ? WHERE mailbox_id = ? AND uid = ?", (new, mb.id, rec.uid)
    )
    (value,) = t.conn.execute("SELECT digest FROM mailboxes WHERE id = ?", (mb.id,)).fetchone()
    delta = digest.contribution(rec.uid, sha, old) ^ digest.contribution(rec.uid, sha, new)
    t.conn.execute(
        "UPDATE mailboxes SET digest = ? WHERE id = ?",
        (digest.dump(digest.load(value) ^ delta), mb.id),
    )
    t.log(FlagsRecord(t.next_seq(), t.at, mb.id, rec.uid, rec.modseq, rec.flags))
    res.note("flags", f"mailbox {mb.id} UID {rec.uid}: equal modseq {modseq}, the peer's taken")
    return True


def _expunge(t: Txn, rec: ExpungeRecord, res: Resolution) -> Record | bool | None:
    mb = _mailbox(t, rec.mailbox_id)
    if mb is None:
        return None
    moved = {u: _moved(t.conn, mb.id, u, res.origin) for u in rec.uids}
    moved = {u: m for u, m in moved.items() if m}
    if not moved:
        return None
    rest = tuple(u for u in rec.uids if u not in moved)
    if not res.resolver:  # the resolver expunged (deleted or moved on) its message there:
        _follow_expunge(t, mb, list(moved), res)  # our copy of it under another UID goes
    if res.resolver:  # the peer expunged a message that lives here under a new UID
        targets = [m[0] for m in moved.values() if m[0] is not None]
        rows = []
        for uid in targets:
            rows += t.conn.execute(
                f"SELECT {REMOVE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid = ?",  # noqa: S608
                (mb.id, uid),
            ).fetchall()
        before = t.state.change_seq
        remove(t, mb, rows, free=True)
        own_since(t, res, before)
    if not rest:
        return bool(res.own)
    return ExpungeRecord(rec.seq, rec.at, rec.mailbox_id, rest, rec.modseq)


def _follow_expunge(t: Txn, mb: MailboxRow, uids: list[int], res: Resolution) -> None:
    """Deferring store: the resolver expunged UIDs where we hold another message. If the
    message it expunged there is one of ours that we still hold under a collided UID (it
    came back from the resolver under a UID we had used), our copy goes too: deleted on
    the resolver, or moved on there (it comes back again under the newer UID)."""
    theirs = [
        (r[0], u)
        for u in uids
        for r in t.conn.execute(
            "SELECT theirs FROM uid_moves WHERE mailbox_id = ? AND uid = ? AND origin = ?"
            " AND theirs IS NOT NULL",
            (mb.id, u, res.origin),
        ).fetchall()
    ]
    rows: list[Any] = []
    for sha, uid in theirs:
        # a copy of it in a mailbox of ours merged into this one goes too: its append
        # was deferred here, so it never drained that copy (splitboxes.drain)
        splitboxes.drain_copy(t, mb.id, uid, sha, res)
        # the collided UID of ours it is the copy of, as the resolver's uid-move named
        # it: deleted there (moved on, it was told under the newer UID first)
        found = _take_own_copy(t, mb, res.origin, uid, sha)
        rows += found
        if found:
            _remove_own_copies(t, mb, found, res.origin)
    if rows:
        res.note("moved", f"mailbox {mb.id}: UIDs {[r[0] for r in rows]} gone on the peer")


def _rename(t: Txn, rec: MailboxRenameRecord, res: Resolution) -> bool | None:
    mb = _mailbox(t, rec.mailbox_id)
    if mb is None or mb.name in (rec.old_name, rec.new_name):
        return None
    if res.resolver:  # renamed on both sides: the resolver's name stays
        res.note("rename", f"mailbox {mb.id}: {mb.name!r} kept, the peer's {rec.new_name!r} not")
        return False
    res.note("rename", f"mailbox {mb.id}: {mb.name!r} renamed {rec.new_name!r} as the peer did")
    return None


def intercept(t: Txn, rec: Record, data: bytes | None, res: Resolution) -> Record | bool | None:
    """Before replica apply: the outcome when the record collides (True/False), a record
    to apply instead, or None to apply ``rec`` as it is. Mailboxes first (splitboxes.py:
    created, renamed or deleted on one side and used on the other), then UIDs and flags."""
    if isinstance(rec, UidMoveRecord):
        return _uid_move(t, rec, res)
    if isinstance(rec, UidMergeRecord):
        return splitboxes.merged_uid(t, rec, res)
    done = splitboxes.intercept(t, rec, data, res)
    if done is not None:
        return done
    if isinstance(rec, AppendRecord):
        return _append(t, rec, data, res)
    if isinstance(rec, FlagsRecord):
        return _flags(t, rec, res)
    if isinstance(rec, ExpungeRecord):
        return _expunge(t, rec, res)
    if isinstance(rec, MailboxRenameRecord):
        return _rename(t, rec, res)
    return None


def unmark_own(t: Txn, res: Resolution) -> None:
    """This store's own records travel to the peer: no origin mark on them. The peer's
    records sent back to it keep where they came from, marked as such (ECHO)."""
    t.conn.executemany("DELETE FROM journal_origin WHERE seq = ?", [(s,) for s in res.own])
    t.conn.executemany(
        "UPDATE journal_origin SET origin = ? WHERE seq = ?",
        [(ECHO + res.origin, s) for s in res.echoed],
    )


__all__ = ["Resolution", "after_append", "intercept", "unmark_own"]
