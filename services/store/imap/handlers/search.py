"""SEARCH / UID SEARCH (RFC 3501 §6.4.4), ESEARCH results (RFC 4731), MODSEQ criterion
(RFC 7162 §3.1.5). The engine evaluates criteria; sequence numbers and \\Recent are
session state and are turned into UID ranges here."""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import TYPE_CHECKING

from mailcore.mailstore import search as q
from services.store.imap import commands as c
from services.store.imap import contexts, objectid, partial
from services.store.imap import responses as r
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import account, enable_condstore, selected

if TYPE_CHECKING:
    from services.store.imap.selected import Selected
    from services.store.imap.session import Session

_NOTHING: q.SearchKey = q.Not(q.All())


def uid_ranges(uids: list[int]) -> q.SearchKey:
    if not uids:
        return _NOTHING
    ranges: list[tuple[int, int]] = []
    for u in sorted(uids):
        if ranges and u == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], u)
        else:
            ranges.append((u, u))
    return q.UidIn(tuple(ranges))


def translate(key: c.SearchKey, sel: Selected) -> q.SearchKey:
    if isinstance(key, c.SAll):
        return q.All()
    if isinstance(key, c.SAnd):
        return q.And(tuple(translate(k, sel) for k in key.keys))
    if isinstance(key, c.SOr):
        return q.Or(translate(key.a, sel), translate(key.b, sel))
    if isinstance(key, c.SNot):
        return q.Not(translate(key.key, sel))
    if isinstance(key, c.SSeq):
        if key.seqs.saved:
            return uid_ranges(sel.saved)  # RFC 5182 "$"
        if key.uid:
            largest = sel.uids[-1] if sel.uids else 0
            return q.UidIn(tuple(key.seqs.resolve(largest)))
        n = len(sel.uids)
        ranges = []
        for a, b in key.seqs.resolve(n):
            lo, hi = max(a, 1), min(b, n)
            if lo <= hi:
                # a run of sequence numbers is a run of the view's UIDs
                ranges.append((sel.uids[lo - 1], sel.uids[hi - 1]))
        return q.UidIn(tuple(ranges)) if ranges else _NOTHING
    if isinstance(key, c.SFlag):
        return q.Flag(key.flag, key.present)
    if isinstance(key, c.SRecent):
        recent = uid_ranges(sorted(sel.recent))
        if key.kind == "recent":
            return recent
        if key.kind == "new":
            return q.And((recent, q.Flag("\\Seen", False)))  # RFC 3501: RECENT UNSEEN
        return q.Not(recent)
    if isinstance(key, c.SSize):
        return q.Larger(key.n) if key.larger else q.Smaller(key.n)
    if isinstance(key, c.SDate):
        return q.SentDate(key.op, key.day) if key.sent else q.InternalDate(key.op, key.day)
    if isinstance(key, c.SSaved):
        return q.SavedDate(key.op, key.day)  # RFC 8514 §4.2
    if isinstance(key, c.SWithin):
        # RFC 5032 §3: relative to the time the search runs
        at = time.time() - key.seconds
        return q.InternalTime("before" if key.older else "since", at)
    if isinstance(key, c.SObjectId):
        # RFC 8474 §6; no THREADIDs here (NIL), so THREADID matches nothing
        fid = objectid.file_of(key.value) if key.kind == "EMAILID" else None
        return q.UidIn(()) if fid is None else q.FileIs(fid)
    if isinstance(key, c.SHeader):
        return q.Header(key.name.lower(), key.text)
    if isinstance(key, c.SBody):
        return q.Text(key.text) if key.whole else q.Body(key.text)
    return q.ModSeq(key.modseq)


_LOCAL = (c.SAll, c.SAnd, c.SOr, c.SNot, c.SSeq, c.SFlag, c.SRecent, c.SModSeq)


def is_local(key: c.SearchKey) -> bool:
    """Criteria on flags, numbers and modseqs only: the session's view answers them."""
    return all(isinstance(k, _LOCAL) for k in c.walk(key))


def local(key: c.SearchKey, sel: Selected) -> set[int]:
    """Indexes of the view matching ``key`` (same semantics as the engine's evaluation)."""
    n = len(sel.uids)
    if isinstance(key, c.SAll):
        return set(range(n))
    if isinstance(key, c.SAnd):
        out = local(key.keys[0], sel)
        for k in key.keys[1:]:
            out &= local(k, sel)
        return out
    if isinstance(key, c.SOr):
        return local(key.a, sel) | local(key.b, sel)
    if isinstance(key, c.SNot):
        return set(range(n)) - local(key.key, sel)
    if isinstance(key, c.SSeq):
        if key.seqs.saved:
            return set(sel.resolve(key.seqs, uid=True))
        if key.uid:
            largest = sel.uids[-1] if sel.uids else 0
            return {i for lo, hi in key.seqs.resolve(largest) for i in _uid_span(sel, lo, hi)}
        return {i for lo, hi in key.seqs.resolve(n) for i in range(max(lo, 1) - 1, min(hi, n))}
    if isinstance(key, c.SFlag):
        if key.flag.startswith("\\"):
            name = "\\" + key.flag[1:].capitalize()
            return {i for i, f in enumerate(sel.flags) if (name in f) == key.present}
        low = key.flag.lower()
        return {
            i for i, f in enumerate(sel.flags) if any(x.lower() == low for x in f) == key.present
        }
    if isinstance(key, c.SRecent):
        recent = {i for u in sel.recent if (i := sel.index_of(u)) is not None}
        if key.kind == "recent":
            return recent
        if key.kind == "new":
            return {i for i in recent if "\\Seen" not in sel.flags[i]}
        return set(range(n)) - recent
    assert isinstance(key, c.SModSeq)
    return {i for i, m in enumerate(sel.modseqs) if m >= key.modseq}


def _uid_span(sel: Selected, lo: int, hi: int) -> range:
    return range(bisect.bisect_left(sel.uids, lo), bisect.bisect_right(sel.uids, hi))


async def search(s: Session, req: c.Request) -> str:
    a = req.args
    assert isinstance(a, c.Search)
    if a.charset is not None and "UTF8=ACCEPT" in s.enabled:
        # RFC 6855 §3 (erratum 4029): no charset once UTF8=ACCEPT is enabled
        raise Refused("SEARCH CHARSET not allowed after ENABLE UTF8=ACCEPT", status="BAD")
    sel = selected(s)
    modseq_key = any(isinstance(k, c.SModSeq) for k in c.walk(a.key))
    returns = a.returns
    if returns is None and s.rev2:
        returns = frozenset({"ALL"})  # RFC 9051 §6.4.4: results come as ESEARCH
    if returns is not None and "SAVE" in returns:
        sel.saved = []  # RFC 5182 §2.1: a failing SEARCH leaves "$" empty
    if modseq_key:
        enable_condstore(s)  # RFC 7162 §3.1.5
    if is_local(a.key):
        # flags, numbers and modseqs: answered from the view, brought up to date first
        # (RFC 3501 §7.4.1: no EXPUNGE during SEARCH; the UID form may carry them)
        await sel.sync(s, expunge_ok=a.uid)
    idx = await matches(s, sel, a.key)
    if returns is not None and "UPDATE" in returns:
        # RFC 5267 §4.2 CONTEXT=SEARCH: keep the result up to date (services.store.imap
        # .contexts); with UPDATE alone the first result is sent as with ALL
        if not returns - {"UPDATE", "CONTEXT"}:
            returns = returns | {"ALL"}
        contexts.start(
            s, sel, contexts.Context(req.tag, a.uid, a.key, None, [sel.uids[i] for i in idx])
        )
    ids = [sel.uids[i] for i in idx] if a.uid else [i + 1 for i in idx]
    highest = max((sel.modseqs[i] for i in idx), default=0)
    page = partial.pick(idx, a.partial) if a.partial is not None else []
    if returns is not None and not returns & {"ALL", "COUNT"} and idx:
        # RFC 7162 §3.1.5 with RFC 4731: under MIN and/or MAX alone (or PARTIAL), the
        # MODSEQ is that of the message(s) returned, not the highest of every match
        shown = [idx[0]] if "MIN" in returns else []
        shown += [idx[-1]] if "MAX" in returns else []
        shown += page
        highest = max((sel.modseqs[i] for i in shown), default=highest)
    if returns is not None and "SAVE" in returns:
        sel.saved = _to_save(returns, [sel.uids[i] for i in idx])
        returns = returns - {"SAVE"}
        if not returns:
            return f"{req.name} completed"  # RFC 5182 §2.1: SAVE alone answers nothing
    if returns is None:
        line = b"SEARCH" + (b" " + r.number_list(ids) if ids else b"")
        if modseq_key and ids:
            line += b" (MODSEQ %d)" % highest
        s.untagged(line)
    else:
        # RFC 4731 §3.1
        parts = [b'ESEARCH (TAG "%s")' % req.tag.encode()]
        if a.uid:
            parts.append(b"UID")
        if ids:
            if "MIN" in returns:
                parts.append(b"MIN %d" % ids[0])
            if "MAX" in returns:
                parts.append(b"MAX %d" % ids[-1])
            if "ALL" in returns:
                parts.append(b"ALL " + r.seq_set(ids))
            if modseq_key and (returns - {"PARTIAL"} or page):
                parts.append(b"MODSEQ %d" % highest)
        if "COUNT" in returns:
            parts.append(b"COUNT %d" % len(ids))
        if a.partial is not None:
            # RFC 9394 §3: "PARTIAL" SP "(" partial-range SP (sequence-set / "NIL") ")"
            got = [sel.uids[i] if a.uid else i + 1 for i in page]
            listed = r.seq_set(got) if got else b"NIL"
            parts.append(b"PARTIAL (%s %s)" % (partial.text(a.partial), listed))
        s.untagged(b" ".join(parts))
    return f"{req.name} completed"


async def matches(s: Session, sel: Selected, key: c.SearchKey) -> list[int]:
    """Positions in the view (ascending) of the messages matching ``key`` now."""
    if is_local(key):
        return sorted(local(key, sel))
    if not sel.uids:
        return []
    view = q.UidIn(((sel.uids[0], sel.uids[-1]),))  # not-yet-announced mail stays out
    criteria = q.And((view, translate(key, sel)))
    if q.reads_messages(criteria):
        found = await scan(s, sel.mailbox_id, criteria)
    else:
        # one SQL query over the index, run with the GIL released: no queue
        found = await account(s).search(sel.mailbox_id, criteria)
    return _indexes(sel, found)


async def scan(s: Session, mailbox_id: int, key: q.SearchKey) -> list[int]:
    """A search that reads message files (BODY, TEXT, other header fields) in Python.

    It waits for a slot of the runtime's :class:`SearchGate` (one per account, a few per
    server: one user's long scan never holds up another user's), gets
    ``rt.search_timeout`` seconds, waiting included, and then answers ``NO [LIMIT]``;
    it stops as soon as the client disconnects. Either way the engine stops the scan
    between two messages."""
    from services.store.imap.session import CloseSession

    acct = account(s)
    try:
        async with asyncio.timeout(s.rt.search_timeout), s.rt.searches.slot(acct.id):
            work = asyncio.ensure_future(acct.search(mailbox_id, key))
            gone = asyncio.ensure_future(s.conn.wait_disconnected())
            try:
                await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                if not work.done():
                    work.cancel()  # the engine returns once its thread has let go
                    await asyncio.gather(work, return_exceptions=True)
            if not work.done() or work.cancelled():
                raise CloseSession  # the client went away: nobody to answer
            return work.result()
    except TimeoutError:
        # RFC 5530 §3 LIMIT: an implementation limit was reached
        raise Refused(
            "Search took too long; search a smaller range or fewer messages", code="LIMIT"
        ) from None


def _indexes(sel: Selected, found: list[int]) -> list[int]:
    """Positions in the view of the UIDs found (ascending); UIDs not in the view are left
    out (mail not announced yet)."""
    if len(found) <= 64:
        return sorted(i for u in found if (i := sel.index_of(u)) is not None)
    pos = dict(zip(sel.uids, range(len(sel.uids)), strict=True))
    idx = [i for i in map(pos.get, found) if i is not None]
    idx.sort()
    return idx


def _to_save(returns: frozenset[str], uids: list[int]) -> list[int]:
    """RFC 5182 §2.1: with MIN and/or MAX but neither ALL nor COUNT, only those are saved."""
    if returns & {"ALL", "COUNT"} or not returns & {"MIN", "MAX"} or not uids:
        return uids
    out = []
    if "MIN" in returns:
        out.append(uids[0])
    if "MAX" in returns and uids[-1] not in out:
        out.append(uids[-1])
    return out
