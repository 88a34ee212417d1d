"""Mailbox snapshots (UIDs, modseqs, flags), kept up to date from the change log.

Every IMAP SELECT and POP3 login takes a snapshot of a mailbox; read row by row, one of
10,000 messages costs 10,000 Python tuples and as many hand-overs of the GIL between the
reader thread and SQLite. So the rows are read in one aggregate row (JSON arrays: one
SQLite step), and each account keeps the last snapshot of each mailbox: the next one is
that snapshot plus the mailbox's entries of the change log since (appends, flag changes,
expunges, in commit order), read in the same read transaction, so it is exactly what a
full read would give. A mailbox change (create, delete, rename, subscription), a
UIDVALIDITY that differs, a pruned change log or a long list of changes reads the
mailbox afresh. The snapshots of the 16 most recently used mailboxes of an account are
kept, and none once the account has not been used for a while (see SnapshotCache).
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mailcore.mailstore import flags as flagset
from mailcore.mailstore import journal, mailboxes
from mailcore.mailstore.errors import ChangeLogTruncated
from mailcore.mailstore.model import Snapshot
from mailcore.mailstore.records import AppendRecord, ExpungeRecord, FlagsRecord, Record

# (after, mailbox_id, upto) -> the records in between from memory, or None
Recent = Callable[[int, int, int], "list[Record] | None"]
MAX_REPLAY = 2000  # changes applied to a kept snapshot; beyond that, a full read
MAX_MAILBOXES = 16  # snapshots kept per account (the mailboxes its sessions use most)


@dataclass(frozen=True, slots=True)
class _Entry:
    uidvalidity: int
    change_seq: int
    uids: list[int]  # never changed once in the cache: updates make new lists
    modseqs: list[int]
    flags: list[frozenset[str]]


class SnapshotCache:
    """The last snapshot of the most recently used mailboxes of one account (any reader
    thread): at most ``size`` of them, the least recently used dropped first. The whole
    cache goes when the engine forgets the account, and is emptied when it closes the
    account's connections (MailStore._trim)."""

    def __init__(self, size: int = MAX_MAILBOXES) -> None:
        self.size = max(1, size)
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.full_reads = 0  # for tests and metrics: snapshots read without the cache

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, mailbox_id: int) -> _Entry | None:
        with self._lock:
            found = self._entries.get(mailbox_id)
            if found is not None:
                self._entries.move_to_end(mailbox_id)
            return found

    def count(self, mailbox_id: int) -> int | None:
        """The number of messages in the kept snapshot of the mailbox (None: none kept):
        a hint of how large the mailbox is, for deciding where to read it."""
        with self._lock:
            found = self._entries.get(mailbox_id)
        return None if found is None else len(found.uids)

    def put(self, mailbox_id: int, entry: _Entry) -> None:
        with self._lock:
            old = self._entries.get(mailbox_id)
            if old is None or old.change_seq <= entry.change_seq:
                self._entries[mailbox_id] = entry
                self._entries.move_to_end(mailbox_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _full(conn: sqlite3.Connection, mailbox_id: int) -> tuple[list[int], list[int], list[str]]:
    # one aggregate row: SQLite scans with the GIL released, Python decodes three arrays
    uids, modseqs, flags = conn.execute(
        "SELECT json_group_array(uid), json_group_array(modseq), json_group_array(flags)"
        " FROM (SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ? ORDER BY uid)",
        (mailbox_id,),
    ).fetchone()
    out_uids: list[int] = json.loads(uids)
    out_modseqs: list[int] = json.loads(modseqs)
    out_flags: list[str] = json.loads(flags)
    if sorted(out_uids) != out_uids:  # O(n) in C when sorted, as it always is
        # aggregate order follows the ordered subquery in SQLite; never trust it blindly
        order = sorted(range(len(out_uids)), key=out_uids.__getitem__)
        out_uids = [out_uids[i] for i in order]
        out_modseqs = [out_modseqs[i] for i in order]
        out_flags = [out_flags[i] for i in order]
    return out_uids, out_modseqs, out_flags


def _replay(
    conn: sqlite3.Connection,
    mailbox_id: int,
    entry: _Entry,
    change_seq: int,
    recent: Recent | None,
    *,
    memory_only: bool = False,
) -> _Entry | None:
    """``entry`` brought to ``change_seq``, or None when it cannot be (read afresh);
    ``memory_only``: None also when the records are not all in memory."""
    # the account's newest records are in memory (core.recent_changes): no rows to decode
    records = None if recent is None else recent(entry.change_seq, mailbox_id, change_seq)
    if records is None and memory_only:
        return None
    if records is None:
        try:
            records = journal.read(
                conn, entry.change_seq, mailbox_id=mailbox_id, upto=change_seq, limit=MAX_REPLAY + 1
            )
        except ChangeLogTruncated:
            return None  # pruned: the changes since the entry are not all there
    if len(records) > MAX_REPLAY:
        return None
    uids, modseqs, flags = list(entry.uids), list(entry.modseqs), list(entry.flags)
    for rec in records:
        if isinstance(rec, AppendRecord):
            if uids and rec.uid <= uids[-1]:
                return None  # UIDs are appended in ascending order; anything else: reread
            uids.append(rec.uid)
            modseqs.append(rec.modseq)
            flags.append(rec.flags)
        elif isinstance(rec, FlagsRecord):
            i = bisect.bisect_left(uids, rec.uid)
            if i < len(uids) and uids[i] == rec.uid:
                modseqs[i] = rec.modseq
                flags[i] = rec.flags
        elif isinstance(rec, ExpungeRecord):
            for uid in rec.uids:
                i = bisect.bisect_left(uids, uid)
                if i < len(uids) and uids[i] == uid:
                    del uids[i], modseqs[i], flags[i]
        else:
            return None  # a mailbox change: create, delete, rename, uidnext
    return _Entry(entry.uidvalidity, change_seq, uids, modseqs, flags)


def current(
    conn: sqlite3.Connection,
    mailbox_id: int,
    cache: SnapshotCache | None,
    recent: Recent | None = None,
    *,
    cached_only: bool = False,
) -> tuple[mailboxes.MailboxRow, int, _Entry] | None:
    """The mailbox's row, the journal position and its (kept, never to be changed) entry
    as of this read transaction; ``cached_only`` as for :func:`snapshot`."""
    mb = mailboxes.by_id(conn, mailbox_id)
    (change_seq,) = conn.execute("SELECT change_seq FROM state WHERE id = 1").fetchone()
    entry = cache.get(mailbox_id) if cache is not None else None
    fresh: _Entry | None = None
    if entry is not None and entry.uidvalidity == mb.uidvalidity:
        if entry.change_seq == change_seq:
            fresh = entry
        elif entry.change_seq < change_seq:
            fresh = _replay(conn, mailbox_id, entry, change_seq, recent, memory_only=cached_only)
    if fresh is None and cached_only:
        return None
    if fresh is None:
        uids, modseqs, texts = _full(conn, mailbox_id)
        decode = flagset.decode
        fresh = _Entry(mb.uidvalidity, change_seq, uids, modseqs, [decode(t) for t in texts])
        if cache is not None:
            cache.full_reads += 1
    if cache is not None and fresh is not entry:
        cache.put(mailbox_id, fresh)
    return mb, change_seq, fresh


def snapshot(
    conn: sqlite3.Connection,
    mailbox_id: int,
    cache: SnapshotCache | None,
    recent: Recent | None = None,
    *,
    cached_only: bool = False,
) -> Snapshot | None:
    """The mailbox as of this read transaction (see the module docstring).

    ``cached_only``: None instead of reading rows (a full read, or journal records that
    are not in memory): the work left is then a few point reads and list copies, small
    enough for the event loop's own connection (Account.snapshot)."""
    found = current(conn, mailbox_id, cache, recent, cached_only=cached_only)
    if found is None:
        return None
    mb, change_seq, fresh = found
    return Snapshot(
        mailbox_id=mb.id,
        uidvalidity=mb.uidvalidity,
        uidnext=mb.uidnext,
        highestmodseq=mb.highestmodseq,
        change_seq=change_seq,
        # copies: the caller may change its lists, the kept ones must not change
        uids=list(fresh.uids),
        modseqs=list(fresh.modseqs),
        flags=list(fresh.flags),
    )


__all__ = ["SnapshotCache", "current", "snapshot"]
