"""Replica apply: a peer's journal record applied verbatim (writer-thread side).

The primary allocates UIDs, UIDVALIDITY, mailbox ids and modseqs (architecture invariant
3); here none is allocated: every value comes from the record. Applying a record that is
already applied changes nothing (the functions return False), so a peer may resend. A UID
taken by a different message, or a mailbox id or name held by another mailbox, raises
:class:`ReplicaConflict` and applies nothing. What is applied is journalled again, with
this store's own ``seq`` (and file reference), so a replica can feed a replica.

Expunged mail never comes back (as in Cyrus replication): an append whose UID this store
already saw expunged is ignored. An append whose bytes the peer no longer has (the
message was expunged there since: pass ``data=None``) advances UIDNEXT and the modseq as
the record says and remembers the UID as expunged, so the later expunge record finds
the same state as on the peer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from mailcore import message
from mailcore.mailstore import digest, mailboxes, names, quota, searchdata, splitbrain
from mailcore.mailstore import flags as flagset
from mailcore.mailstore.core import Txn
from mailcore.mailstore.errors import ReplicaConflict
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.messages import INSERT_ROW, REMOVE_COLUMNS, row_values, select_uids
from mailcore.mailstore.model import Quota
from mailcore.mailstore.records import (
    AccountRemovedRecord,
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxMergeRecord,
    MailboxRenameRecord,
    QuotaRecord,
    Record,
    SubscribeRecord,
    UidMergeRecord,
    UidMoveRecord,
    UidNextRecord,
    UnsubscribeRecord,
)


def _mailbox(t: Txn, mailbox_id: int) -> MailboxRow:
    row = t.conn.execute(
        f"SELECT {mailboxes.COLUMNS} FROM mailboxes WHERE id = ?",  # noqa: S608 (constants)
        (mailbox_id,),
    ).fetchone()
    if row is None:
        raise ReplicaConflict(f"no mailbox with id {mailbox_id}", mailbox_id=mailbox_id)
    return MailboxRow(*row)


def _advance(t: Txn, mb: MailboxRow, *, uidnext: int, modseq: int, delta: int = 0) -> None:
    (old,) = t.conn.execute("SELECT digest FROM mailboxes WHERE id = ?", (mb.id,)).fetchone()
    t.conn.execute(
        "UPDATE mailboxes SET uidnext = max(uidnext, ?), highestmodseq = max(highestmodseq, ?),"
        " digest = ? WHERE id = ?",
        (uidnext, modseq, digest.dump(digest.load(old) ^ delta), mb.id),
    )
    t.state.modseq = max(t.state.modseq, modseq)


def log_append(t: Txn, mb: MailboxRow, rec: AppendRecord, size: int, fid: int) -> None:
    """This store's journal record of the peer's append, applied with the peer's UID,
    mod-sequence and flags (one record per message, whether applied alone or in a run:
    replica_run.py)."""
    t.log(
        AppendRecord(
            t.next_seq(),
            t.at,
            mb.id,
            mb.uidvalidity,
            rec.uid,
            rec.modseq,
            rec.internal_date,
            size,
            rec.sha256,
            fid,
            rec.flags,
            rec.delivery_key,
        )
    )


def _append(t: Txn, rec: AppendRecord, data: bytes | None) -> bool:
    mb = _mailbox(t, rec.mailbox_id)
    if mb.uidvalidity != rec.uidvalidity:
        raise ReplicaConflict(
            f"mailbox {mb.id} has UIDVALIDITY {mb.uidvalidity}, not {rec.uidvalidity}",
            mailbox_id=mb.id,
        )
    found = t.conn.execute(
        "SELECT sha256 FROM messages WHERE mailbox_id = ? AND uid = ?", (mb.id, rec.uid)
    ).fetchone()
    if found is not None:
        if (found[0] or b"").hex() == rec.sha256:
            return False
        raise ReplicaConflict(
            f"UID {rec.uid} of mailbox {mb.id} is another message", mailbox_id=mb.id, uid=rec.uid
        )
    gone = t.conn.execute(
        "SELECT 1 FROM expunged WHERE mailbox_id = ? AND uid = ?", (mb.id, rec.uid)
    ).fetchone()
    if gone is not None:
        return False  # expunged mail never comes back
    if data is None:
        t.conn.execute(
            "INSERT INTO expunged VALUES (?, ?, ?)", (mb.id, rec.uid, rec.modseq)
        )  # the peer expunged it since: so will the record that says so
        _advance(t, mb, uidnext=rec.uid + 1, modseq=rec.modseq)
        t.log(UidNextRecord(t.next_seq(), t.at, mb.id, rec.uid + 1, rec.modseq))
        return True
    sha = hashlib.sha256(data).digest()
    if sha.hex() != rec.sha256:
        raise ReplicaConflict(
            f"bytes for UID {rec.uid} do not match the record's SHA-256",
            mailbox_id=mb.id,
            uid=rec.uid,
        )
    parsed = message.parse(data)
    (fid,) = t.write_files([data])
    t.conn.execute("INSERT INTO files VALUES (?, ?, ?)", (fid, len(data), message.dumps(parsed)))
    encoded = flagset.encode(rec.flags)
    t.conn.execute(
        INSERT_ROW,
        row_values(
            (mb.id, rec.uid, rec.modseq, encoded, rec.internal_date, len(data), fid, sha),
            rec.at,  # RFC 8514: saved when the primary saved it
            searchdata.of(parsed, data),
        ),
    )
    t.conn.execute("INSERT INTO recent VALUES (?, ?)", (mb.id, rec.uid))
    if rec.delivery_key is not None:
        t.conn.execute(
            "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?)",
            (rec.delivery_key, mb.id, rec.uid, rec.at),
        )
    delta = digest.contribution(rec.uid, sha, encoded)
    _advance(t, mb, uidnext=rec.uid + 1, modseq=rec.modseq, delta=delta)
    t.state.usage_messages += 1
    t.state.usage_bytes += len(data)
    log_append(t, mb, rec, len(data), fid)
    return True


def _flags(t: Txn, rec: FlagsRecord) -> bool:
    mb = _mailbox(t, rec.mailbox_id)
    row = t.conn.execute(
        "SELECT modseq, flags, sha256 FROM messages WHERE mailbox_id = ? AND uid = ?",
        (mb.id, rec.uid),
    ).fetchone()
    if row is None:
        gone = t.conn.execute(
            "SELECT 1 FROM expunged WHERE mailbox_id = ? AND uid = ?", (mb.id, rec.uid)
        ).fetchone()
        if gone is not None:
            return False
        raise ReplicaConflict(
            f"no message {rec.uid} in mailbox {mb.id}", mailbox_id=mb.id, uid=rec.uid
        )
    modseq, old, sha = row
    if modseq >= rec.modseq:
        return False  # this change or a later one is here already
    new = flagset.encode(rec.flags)
    t.conn.execute(
        "UPDATE messages SET modseq = ?, flags = ? WHERE mailbox_id = ? AND uid = ?",
        (rec.modseq, new, mb.id, rec.uid),
    )
    delta = digest.contribution(rec.uid, sha, old) ^ digest.contribution(rec.uid, sha, new)
    _advance(t, mb, uidnext=0, modseq=rec.modseq, delta=delta)
    t.log(FlagsRecord(t.next_seq(), t.at, mb.id, rec.uid, rec.modseq, rec.flags))
    return True


def _expunge(t: Txn, rec: ExpungeRecord) -> bool:
    mb = _mailbox(t, rec.mailbox_id)
    rows = select_uids(t.conn, REMOVE_COLUMNS, mb.id, list(rec.uids))
    keys = [(mb.id, r[0]) for r in rows]
    t.conn.executemany("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", keys)
    t.conn.executemany("DELETE FROM recent WHERE mailbox_id = ? AND uid = ?", keys)
    marked = 0
    for uid in rec.uids:
        marked += t.conn.execute(
            "INSERT INTO expunged VALUES (?, ?, ?) ON CONFLICT (mailbox_id, uid)"
            " DO UPDATE SET modseq = excluded.modseq WHERE modseq < excluded.modseq",
            (mb.id, uid, rec.modseq),
        ).rowcount
    if not rows and not marked:
        return False
    delta = digest.EMPTY
    for r in rows:
        delta ^= digest.contribution(r[0], r[4], r[3])
    _advance(t, mb, uidnext=0, modseq=rec.modseq, delta=delta)
    t.state.usage_messages -= len(rows)
    t.state.usage_bytes -= sum(r[2] for r in rows)
    t.release_files([r[1] for r in rows])
    t.log(ExpungeRecord(t.next_seq(), t.at, mb.id, rec.uids, rec.modseq))
    return True


def _create(t: Txn, rec: MailboxCreateRecord) -> bool:
    same_id = t.conn.execute(
        "SELECT name, uidvalidity FROM mailboxes WHERE id = ?", (rec.mailbox_id,)
    ).fetchone()
    if same_id is not None:
        if same_id[1] == rec.uidvalidity:
            return False
        raise ReplicaConflict(
            f"mailbox id {rec.mailbox_id} is another mailbox", mailbox_id=rec.mailbox_id
        )
    if mailboxes.by_name(t.conn, rec.name) is not None:
        raise ReplicaConflict(f"mailbox {rec.name!r} exists with another id")
    t.conn.execute(
        "INSERT INTO mailboxes (id, name, special_use, uidvalidity, uidnext, highestmodseq)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (rec.mailbox_id, rec.name, rec.special_use, rec.uidvalidity, rec.uidnext, rec.modseq),
    )
    s = t.state
    s.last_mailbox_id = max(s.last_mailbox_id, rec.mailbox_id)
    s.last_uidvalidity = max(s.last_uidvalidity, rec.uidvalidity)
    s.modseq = max(s.modseq, rec.modseq)
    t.log(
        MailboxCreateRecord(
            t.next_seq(),
            t.at,
            rec.mailbox_id,
            rec.name,
            rec.special_use,
            rec.uidvalidity,
            rec.uidnext,
            rec.modseq,
        )
    )
    return True


def _delete(t: Txn, rec: MailboxDeleteRecord) -> bool:
    row = t.conn.execute("SELECT 1 FROM mailboxes WHERE id = ?", (rec.mailbox_id,)).fetchone()
    if row is None:
        return False
    mailboxes.drop_messages(t, rec.mailbox_id)
    t.conn.execute("DELETE FROM mailboxes WHERE id = ?", (rec.mailbox_id,))
    t.state.modseq = max(t.state.modseq, rec.modseq)
    t.log(MailboxDeleteRecord(t.next_seq(), t.at, rec.mailbox_id, rec.name, rec.modseq, rec.uids))
    return True


def _rename(t: Txn, rec: MailboxRenameRecord) -> bool:
    mb = _mailbox(t, rec.mailbox_id)
    if mb.name == rec.new_name:
        return False
    other = mailboxes.by_name(t.conn, rec.new_name)
    if other is not None:
        raise ReplicaConflict(f"mailbox {rec.new_name!r} exists with another id")
    t.conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (rec.new_name, mb.id))
    t.state.modseq = max(t.state.modseq, rec.modseq)
    t.log(MailboxRenameRecord(t.next_seq(), t.at, mb.id, mb.name, rec.new_name, rec.modseq))
    return True


def _uidnext(t: Txn, rec: UidNextRecord) -> bool:
    mb = _mailbox(t, rec.mailbox_id)
    if mb.uidnext >= rec.uidnext:
        return False
    _advance(t, mb, uidnext=rec.uidnext, modseq=rec.modseq)
    t.log(UidNextRecord(t.next_seq(), t.at, mb.id, rec.uidnext, rec.modseq))
    return True


def _quota(t: Txn, rec: QuotaRecord) -> bool:
    before = t.state.change_seq
    quota.note(t, Quota(rec.bytes, rec.messages))
    return t.state.change_seq != before


def _account_removed(t: Txn, rec: AccountRemovedRecord) -> bool:
    raise ValueError("an account removal is applied with MailStore.remove_account")


_APPLY: dict[type[Any], Callable[[Txn, Any], bool]] = {
    FlagsRecord: _flags,
    ExpungeRecord: _expunge,
    MailboxCreateRecord: _create,
    MailboxDeleteRecord: _delete,
    MailboxRenameRecord: _rename,
    MailboxMergeRecord: lambda t, r: False,  # a split-brain verdict (splitboxes.py) only
    UidMoveRecord: lambda t, r: False,  # split-brain bookkeeping (splitbrain.py) only
    UidMergeRecord: lambda t, r: False,  # split-brain bookkeeping (splitboxes.py) only
    SubscribeRecord: lambda t, r: mailboxes.subscribe(t, r.name, True),
    UnsubscribeRecord: lambda t, r: mailboxes.subscribe(t, r.name, False),
    UidNextRecord: _uidnext,
    QuotaRecord: _quota,
    AccountRemovedRecord: _account_removed,
}


def creates_account(rec: Record) -> bool:
    """Whether ``rec`` may create a replica's missing account: the creation of its INBOX,
    the first record of every account's journal (mailboxes.create_defaults, and the
    baseline of an upgraded index, migrate.py), so the account is never without INBOX."""
    return isinstance(rec, MailboxCreateRecord) and names.is_inbox(rec.name)


def apply(
    t: Txn, rec: Record, data: bytes | None = None, res: splitbrain.Resolution | None = None
) -> bool:
    """Apply ``rec`` (``data``: the stored bytes, for an append); False when it was
    applied already (nothing changed). With ``res``, collisions of a split brain are
    settled (splitbrain.py) instead of raising :class:`ReplicaConflict`."""
    if res is not None:
        done = splitbrain.intercept(t, rec, data, res)
        if isinstance(done, bool):
            return done
        if done is not None:
            rec = done
        if res.drop_data:
            data = None
    before = t.state.change_seq
    if isinstance(rec, AppendRecord):
        applied = _append(t, rec, data)
        if res is not None:
            splitbrain.after_append(t, rec, res, applied)
    else:
        applied = _APPLY[type(rec)](t, rec)
    if res is not None and res.echo:  # settled as it is: back to the peer (splitboxes.py)
        res.echoed.extend(range(before + 1, t.state.change_seq + 1))
        res.echo = False
    return applied


def raise_uidnext(t: Txn, mailbox_id: int, uidnext: int) -> bool:
    """Local: UIDs below ``uidnext`` are never given out in the mailbox (journalled)."""
    mb = mailboxes.by_id(t.conn, mailbox_id)
    if mb.uidnext >= uidnext:
        return False
    modseq = t.modseq()
    _advance(t, mb, uidnext=uidnext, modseq=modseq)
    t.log(UidNextRecord(t.next_seq(), t.at, mb.id, uidnext, modseq))
    return True


__all__ = ["apply", "creates_account", "raise_uidnext"]
