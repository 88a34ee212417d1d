"""Forced replica apply: make one account of this store equal to a peer's (resync, repair).

Replica apply (replica.py) applies a peer's journal records and refuses, or ignores,
anything that contradicts what is here: an older modseq, an expunged UID, a UID holding
another message. A resync (``mailctl mirror resync``, ``resync-fast``, ``resync-mkdir``
and the scheduled repair pass, services/mirror/resync.py) takes the other side as the
truth instead, so here the same writes are *forced*:

* :func:`force_flags` sets a message's flags *and* modseq as the peer has them, even when
  the modseq here is higher;
* :func:`force_append` adds a message with the peer's UID, modseq, flags and dates, even
  when this store saw the UID expunged, replacing another message that held the UID;
* :func:`force_expunge` removes UIDs the peer does not have;
* :func:`sync_mailbox` / :func:`drop_mailbox` / :func:`set_subscriptions` /
  :func:`set_quota` bring the folder list, UIDVALIDITY, UIDNEXT, subscriptions and quota.

Nothing is allocated here either: every value comes from the peer. Every change is
journalled as the ordinary record (so IMAP sessions and the snapshot cache see it), and
:class:`Repair` marks those records with the peer they came from, so the mirror never
ships them back. Reads for the comparison (:func:`account_state`, :func:`uid_rows`) are
here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from mailcore.mailstore import digest, mailboxes, readers, replica
from mailcore.mailstore import flags as flagset
from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxRenameRecord,
    QuotaRecord,
    SubscribeRecord,
    UidNextRecord,
    UnsubscribeRecord,
)

if TYPE_CHECKING:
    from mailcore.mailstore.account import Account
    from mailcore.mailstore.core import Txn

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MailboxState:
    id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    digest: str


@dataclass(frozen=True, slots=True)
class AccountState:
    mailboxes: list[MailboxState]
    subscriptions: list[str]
    quota_bytes: int
    quota_messages: int
    head: int  # the journal's newest record


@dataclass(frozen=True, slots=True)
class UidRow:
    """One message as the comparison sees it (and a forced append needs it)."""

    uid: int
    sha256: str
    flags: frozenset[str]
    modseq: int
    internal_date: float
    size: int
    file_id: int
    saved: float


# --- reads ---------------------------------------------------------------------------------
def account_state(conn: sqlite3.Connection) -> AccountState:
    counts = dict(
        conn.execute("SELECT mailbox_id, count(*) FROM messages GROUP BY mailbox_id").fetchall()
    )
    boxes = [
        MailboxState(i, n, su, v, nxt, hm, int(counts.get(i, 0)), digest.text(digest.load(d)))
        for i, n, su, v, nxt, hm, d in conn.execute(
            "SELECT id, name, special_use, uidvalidity, uidnext, highestmodseq, digest"
            " FROM mailboxes ORDER BY id"
        )
    ]
    qb, qm, head = conn.execute(
        "SELECT quota_bytes, quota_messages, change_seq FROM state WHERE id = 1"
    ).fetchone()
    return AccountState(boxes, mailboxes.subscriptions(conn), qb, qm, head)


def uid_rows(conn: sqlite3.Connection, mailbox_id: int, first: int, last: int) -> list[UidRow]:
    rows = conn.execute(
        "SELECT uid, sha256, flags, modseq, internal_date, size, file_id, save_date"
        " FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid",
        (mailbox_id, first, last),
    )
    return [
        UidRow(u, (s or b"").hex(), flagset.decode(f), m, d, z, fid, sv if sv is not None else d)
        for u, s, f, m, d, z, fid, sv in rows
    ]


# --- forced writes (writer thread) -----------------------------------------------------------
def force_flags(t: Txn, mailbox_id: int, uid: int, modseq: int, flags: frozenset[str]) -> bool:
    """The message's flags and modseq become exactly the peer's (an older modseq too)."""
    row = t.conn.execute(
        "SELECT modseq, flags, sha256 FROM messages WHERE mailbox_id = ? AND uid = ?",
        (mailbox_id, uid),
    ).fetchone()
    if row is None:
        return False
    old_modseq, old, sha = row
    new = flagset.encode(flags)
    if old == new and old_modseq == modseq:
        return False
    t.conn.execute(
        "UPDATE messages SET modseq = ?, flags = ? WHERE mailbox_id = ? AND uid = ?",
        (modseq, new, mailbox_id, uid),
    )
    (value,) = t.conn.execute("SELECT digest FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    delta = digest.contribution(uid, sha, old) ^ digest.contribution(uid, sha, new)
    t.conn.execute(
        "UPDATE mailboxes SET digest = ?, highestmodseq = max(highestmodseq, ?) WHERE id = ?",
        (digest.dump(digest.load(value) ^ delta), modseq, mailbox_id),
    )
    t.state.modseq = max(t.state.modseq, modseq)
    t.log(FlagsRecord(t.next_seq(), t.at, mailbox_id, uid, modseq, flags))
    return True


def force_expunge(t: Txn, mailbox_id: int, uids: list[int], modseq: int) -> int:
    """Remove ``uids`` (those present); the number removed."""
    present = [
        u
        for (u,) in t.conn.execute(
            "SELECT uid FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM"
            " json_each(?))",
            (mailbox_id, "[" + ",".join(map(str, uids)) + "]"),
        )
    ]
    if present:
        replica.apply(t, ExpungeRecord(0, t.at, mailbox_id, tuple(present), modseq))
    return len(present)


def force_append(t: Txn, rec: AppendRecord, data: bytes) -> bool:
    """Add the peer's message under its UID, whatever this store held or expunged there."""
    found = t.conn.execute(
        "SELECT sha256 FROM messages WHERE mailbox_id = ? AND uid = ?", (rec.mailbox_id, rec.uid)
    ).fetchone()
    if found is not None:
        if (found[0] or b"").hex() == rec.sha256:
            return False
        force_expunge(t, rec.mailbox_id, [rec.uid], rec.modseq)
    t.conn.execute(
        "DELETE FROM expunged WHERE mailbox_id = ? AND uid = ?", (rec.mailbox_id, rec.uid)
    )
    return replica.apply(t, rec, data)


def drop_mailbox(t: Txn, mailbox_id: int, modseq: int) -> bool:
    row = t.conn.execute("SELECT name FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    if row is None:
        return False
    return replica.apply(t, MailboxDeleteRecord(0, t.at, mailbox_id, row[0], modseq))


def creation(box: MailboxState, at: float) -> MailboxCreateRecord:
    """The record creating the peer's mailbox here (UIDNEXT follows separately)."""
    return MailboxCreateRecord(
        0, at, box.id, box.name, box.special_use, box.uidvalidity, 1, box.highestmodseq
    )


def sync_mailbox(t: Txn, box: MailboxState) -> bool:
    """The peer's mailbox here: same id, name, UIDVALIDITY, UIDNEXT (created, renamed or
    recreated; a mailbox here holding its name under another id is dropped)."""
    changed = False
    here = t.conn.execute(
        "SELECT name, uidvalidity, uidnext FROM mailboxes WHERE id = ?", (box.id,)
    ).fetchone()
    if here is not None and here[1] != box.uidvalidity:
        changed |= drop_mailbox(t, box.id, box.highestmodseq)
        here = None
    other = mailboxes.by_name(t.conn, box.name)
    if other is not None and other.id != box.id:
        changed |= drop_mailbox(t, other.id, box.highestmodseq)
    if here is None:
        changed |= replica.apply(t, creation(box, t.at))
    elif here[0] != box.name:
        rec2 = MailboxRenameRecord(0, t.at, box.id, here[0], box.name, box.highestmodseq)
        changed |= replica.apply(t, rec2)
    if box.special_use is not None:
        t.conn.execute(
            "UPDATE mailboxes SET special_use = ? WHERE id = ?", (box.special_use, box.id)
        )
    changed |= replica.apply(t, UidNextRecord(0, t.at, box.id, box.uidnext, box.highestmodseq))
    return changed


def set_subscriptions(t: Txn, names: list[str]) -> int:
    """Subscriptions become exactly ``names``; the number changed."""
    have = set(mailboxes.subscriptions(t.conn))
    want = set(names)
    changed = 0
    for name in sorted(want - have):
        changed += replica.apply(t, SubscribeRecord(0, t.at, name))
    for name in sorted(have - want):
        changed += replica.apply(t, UnsubscribeRecord(0, t.at, name))
    return changed


def set_quota(t: Txn, quota_bytes: int, quota_messages: int) -> bool:
    return replica.apply(t, QuotaRecord(0, t.at, quota_bytes, quota_messages))


class Repair:
    """The forced writes for one account, each in its own transaction, the journal
    records it writes marked as coming from ``origin`` (never shipped back to it)."""

    def __init__(self, account: Account, origin: str) -> None:
        self._acct, self.origin = account, origin

    async def _write(self, fn: Callable[[Txn], T]) -> T:
        def run(t: Txn) -> T:
            before = t.state.change_seq
            out = fn(t)
            readers.mark_origin(t, before, self.origin)
            return out

        return await self._acct._write(run)

    async def state(self) -> AccountState:
        return await self._acct._read(account_state)

    async def uid_rows(self, mailbox_id: int, first: int, last: int) -> list[UidRow]:
        return await self._acct._read(lambda c: uid_rows(c, mailbox_id, first, last))

    async def flags(self, mailbox_id: int, uid: int, modseq: int, flags: frozenset[str]) -> bool:
        return await self._write(lambda t: force_flags(t, mailbox_id, uid, modseq, flags))

    async def expunge(self, mailbox_id: int, uids: list[int], modseq: int) -> int:
        return await self._write(lambda t: force_expunge(t, mailbox_id, uids, modseq))

    async def append(self, rec: AppendRecord, data: bytes) -> bool:
        return await self._write(lambda t: force_append(t, rec, data))

    async def mailbox(self, box: MailboxState) -> bool:
        return await self._write(lambda t: sync_mailbox(t, box))

    async def drop(self, mailbox_id: int, modseq: int) -> bool:
        return await self._write(lambda t: drop_mailbox(t, mailbox_id, modseq))

    async def subscriptions(self, names: list[str]) -> int:
        return await self._write(lambda t: set_subscriptions(t, names))

    async def quota(self, quota_bytes: int, quota_messages: int) -> bool:
        return await self._write(lambda t: set_quota(t, quota_bytes, quota_messages))


__all__ = [
    "AccountState",
    "MailboxState",
    "Repair",
    "UidRow",
    "account_state",
    "creation",
    "drop_mailbox",
    "force_append",
    "force_expunge",
    "force_flags",
    "set_quota",
    "set_subscriptions",
    "sync_mailbox",
    "uid_rows",
]
