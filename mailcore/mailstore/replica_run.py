"""Replica apply of several of a peer's records in one write (writer-thread side): what
the mirror's ``apply_batch`` hands the store, a request's records of one account.

Applied one by one (replica.py, splitbrain.py), a replicated delivery cost about twenty
statements, two SHA-256 passes of its bytes, a savepoint and a message-file write of its
own (bench W6: the mirror's store spent ~0.45 ms of CPU a record). Consecutive appends to
one mailbox — a catch-up is mostly that — are applied together when none of them can
collide with anything here: the checks each record's apply makes are asked once for the
run (no row and no expunged mark at any of its UIDs, none of the split brain's
bookkeeping about the mailbox, the bytes matching each record's SHA-256), and then the
same rows, files and journal records are written as the one-by-one apply would write,
with ``executemany`` and one message-file batch. Anything else — another kind of
record, a run that fails a check, or one whose write fails — goes one by one, each
record in a savepoint of its own as before (a refused record rolls back alone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from mailcore import message
from mailcore.mailstore import digest, readers, replica, searchdata
from mailcore.mailstore import flags as flagset
from mailcore.mailstore.core import Txn, in_savepoint
from mailcore.mailstore.mailboxes import MailboxRow
from mailcore.mailstore.messages import INSERT_ROW, row_values
from mailcore.mailstore.records import AppendRecord, Record
from mailcore.mailstore.resolution import Resolution, mailbox_row

Item = tuple[Record, bytes | None]
Outcome = tuple[object, Exception | None]
MIN_RUN = 2  # a single append goes the usual way


def _run_end(items: Sequence[Item], start: int) -> int:
    """The end of the run of appends to one mailbox, with bytes and ascending UIDs,
    that starts at ``start``."""
    first = items[start][0]
    if not isinstance(first, AppendRecord) or items[start][1] is None:
        return start + 1
    end, uid = start + 1, first.uid
    while end < len(items):
        rec, data = items[end]
        if (
            not isinstance(rec, AppendRecord)
            or data is None
            or rec.mailbox_id != first.mailbox_id
            or rec.uidvalidity != first.uidvalidity
            or rec.uid <= uid
        ):
            break
        uid = rec.uid
        end += 1
    return end


def _clear(t: Txn, mb: MailboxRow, uids: list[int], origin: str, resolver: bool | None) -> bool:
    """Whether none of ``uids`` (ascending) can collide in ``mb``: each record's own apply
    would find nothing there and settle nothing (splitbrain.py, splitboxes.py)."""
    conn, lo, hi = t.conn, uids[0], uids[-1]
    wanted = set(uids)
    for table in ("messages", "expunged"):
        taken = conn.execute(
            f"SELECT uid FROM {table} WHERE mailbox_id = ? AND uid BETWEEN ? AND ?",  # noqa: S608 (constant)
            (mb.id, lo, hi),
        ).fetchall()
        if any(u in wanted for (u,) in taken):
            return False
    if resolver is None:  # plain replica apply: no split brain to settle
        return True
    if resolver and lo < mb.uidnext:
        return False  # a late arrival: the resolver renumbers it (splitbrain._append)
    checks = (
        # a UID collided or deferred here (splitbrain._moved, after_append)
        ("SELECT 1 FROM uid_moves WHERE mailbox_id = ? AND origin = ? LIMIT 1", (mb.id, origin)),
        # the peer's mailbox merged into another here (splitmerge._target)
        ("SELECT 1 FROM mailbox_moves WHERE origin = ? AND mailbox_id = ?", (origin, mb.id)),
        # a mailbox of ours set aside for a verdict naming this one (splitpark.drain_copy)
        ("SELECT 1 FROM mailbox_parked WHERE origin = ? AND target = ?", (origin, mb.id)),
    )
    return all(conn.execute(sql, args).fetchone() is None for sql, args in checks)


def _appends(
    t: Txn, run: Sequence[Item], origin: str | None, resolver: bool | None
) -> list[object] | None:
    """Apply ``run`` (from :func:`_run_end`) together; its outcomes, or None when it has
    to go one by one (nothing written)."""
    recs = [rec for rec, _ in run if isinstance(rec, AppendRecord)]
    datas = [data for _, data in run if data is not None]
    mb = mailbox_row(t.conn, recs[0].mailbox_id)
    if mb is None or mb.uidvalidity != recs[0].uidvalidity:
        return None
    shas = [hashlib.sha256(data).digest() for data in datas]
    if any(sha.hex() != rec.sha256 for sha, rec in zip(shas, recs, strict=True)):
        return None  # replica apply refuses that one: the others still go
    if not _clear(t, mb, [r.uid for r in recs], origin or "", resolver):
        return None
    parsed = [message.parse(data) for data in datas]
    fids = t.write_files(datas)
    conn = t.conn
    conn.executemany(
        "INSERT INTO files VALUES (?, ?, ?)",
        [(fid, len(d), message.dumps(p)) for fid, d, p in zip(fids, datas, parsed, strict=True)],
    )
    rows, delta = [], digest.EMPTY
    before = t.state.change_seq
    for rec, data, p, fid, sha in zip(recs, datas, parsed, fids, shas, strict=True):
        encoded = flagset.encode(rec.flags)
        base = (mb.id, rec.uid, rec.modseq, encoded, rec.internal_date, len(data), fid, sha)
        rows.append(row_values(base, rec.at, searchdata.of(p, data)))  # RFC 8514: as saved there
        delta ^= digest.contribution(rec.uid, sha, encoded)
        replica.log_append(t, mb, rec, len(data), fid)
    conn.executemany(INSERT_ROW, rows)
    conn.executemany("INSERT INTO recent VALUES (?, ?)", [(mb.id, r.uid) for r in recs])
    conn.executemany(
        "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?)",
        [(r.delivery_key, mb.id, r.uid, r.at) for r in recs if r.delivery_key is not None],
    )
    (old,) = conn.execute("SELECT digest FROM mailboxes WHERE id = ?", (mb.id,)).fetchone()
    uidnext, modseq = recs[-1].uid + 1, max(r.modseq for r in recs)
    conn.execute(
        "UPDATE mailboxes SET uidnext = max(uidnext, ?), highestmodseq = max(highestmodseq, ?),"
        " digest = ? WHERE id = ?",
        (uidnext, modseq, digest.dump(digest.load(old) ^ delta), mb.id),
    )
    s = t.state
    s.modseq = max(s.modseq, modseq)
    s.usage_messages += len(recs)
    s.usage_bytes += sum(len(d) for d in datas)
    if origin is not None:
        readers.mark_origin(t, before, origin)
    if resolver is None:
        return [True] * len(recs)
    assert origin is not None
    return [Resolution(origin, resolver, applied=True) for _ in recs]


def apply(
    t: Txn,
    items: Sequence[Item],
    one: Callable[[Txn, Record, bytes | None], object],
    *,
    origin: str | None,
    resolver: bool | None,
) -> list[Outcome]:
    """Apply ``items`` in order: runs of appends together (:func:`_appends`), the rest
    with ``one(t, rec, data)`` (the record's usual apply), each in a savepoint of its
    own. ``resolver``: None for plain replica apply, else the split-brain role."""
    out: list[Outcome] = []
    i = 0
    while i < len(items):
        end = _run_end(items, i)
        run = items[i:end]
        if len(run) >= MIN_RUN:

            def together(t: Txn, run: Sequence[Item] = run) -> list[object] | None:
                return _appends(t, run, origin, resolver)

            outcomes, exc = in_savepoint(t, together)
            if exc is None and isinstance(outcomes, list):
                out.extend((outcome, None) for outcome in outcomes)
                i = end
                continue
        for rec, data in run:

            def single(t: Txn, rec: Record = rec, data: bytes | None = data) -> object:
                return one(t, rec, data)

            out.append(in_savepoint(t, single))
        i = end
    return out


__all__ = ["MIN_RUN", "apply"]
