"""SORT / UID SORT (RFC 5256 §3, RFC 5957 SORT=DISPLAY), ESORT results (RFC 5267 §3.2)
and THREAD / UID THREAD (RFC 5256 §4). The search criteria are SEARCH's (handlers.search
turns them into engine criteria); the engine orders and threads from indexed columns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from mailcore.mailstore import mailthreads
from mailcore.mailstore import search as q
from services.store.imap import commands as c
from services.store.imap import contexts, partial
from services.store.imap import responses as r
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import account, enable_condstore, selected
from services.store.imap.handlers.search import translate

if TYPE_CHECKING:
    from services.store.imap.selected import Selected
    from services.store.imap.session import Session

T = TypeVar("T")


def _criteria(s: Session, sel: Selected, key: c.SearchKey, *, view: bool) -> q.SearchKey:
    """``key`` for the engine; ``view``: restricted to the UIDs of the session's view
    (SORT leaves that to the caller: a UID range in the query would make SQLite scan by
    UID and sort afterwards instead of reading a sort index in order)."""
    if any(isinstance(k, c.SModSeq) for k in c.walk(key)):
        enable_condstore(s)  # RFC 7162 §3.1.5
    criteria = translate(key, sel)
    if not view:
        return criteria
    seen = q.UidIn(((sel.uids[0], sel.uids[-1]),))  # not-yet-announced mail stays out
    return q.And((seen, criteria))


async def _limited(s: Session, key: q.SearchKey, work: Callable[[], Awaitable[T]]) -> T:
    """Criteria that read messages (BODY, TEXT, other headers) wait for a search slot and
    get the search time limit, as SEARCH does (handlers.search.scan)."""
    if not q.reads_messages(key):
        return await work()
    acct = account(s)
    try:
        async with asyncio.timeout(s.rt.search_timeout), s.rt.searches.slot(acct.id):
            return await work()
    except TimeoutError:
        # RFC 5530 §3 LIMIT
        raise Refused(
            "Search took too long; search a smaller range or fewer messages", code="LIMIT"
        ) from None


async def sorted_places(
    s: Session, sel: Selected, key: c.SearchKey, keys: tuple[tuple[str, bool], ...]
) -> list[int]:
    """Positions in the view of the messages matching ``key``, in the order of ``keys``."""
    if not sel.uids:
        return []
    criteria = _criteria(s, sel, key, view=False)
    mailbox_id = sel.mailbox_id
    found = await _limited(s, criteria, lambda: account(s).sort(mailbox_id, criteria, keys))
    # the view's UIDs only (a UID not in it was not announced to this session yet)
    pos = {u: i for i, u in enumerate(sel.uids)}
    return [i for i in map(pos.get, found) if i is not None]


async def sort(s: Session, req: c.Request) -> str:
    a = req.args
    assert isinstance(a, c.Sort)
    sel = selected(s)
    ids: list[int] = []
    places: list[int] = []  # positions in the view, in sort order
    if sel.uids:
        places = await sorted_places(s, sel, a.key, a.keys)
        ids = [sel.uids[i] for i in places] if a.uid else [i + 1 for i in places]
    returns = a.returns
    if returns is not None and "UPDATE" in returns:
        # RFC 5267 §4.2 CONTEXT=SORT: keep the result up to date (services.store.imap
        # .contexts); with UPDATE alone the first result is sent as with ALL
        if not returns - {"UPDATE", "CONTEXT"}:
            returns = returns | {"ALL"}
        ctx = contexts.Context(req.tag, a.uid, a.key, a.keys, [sel.uids[i] for i in places])
        contexts.start(s, sel, ctx)
    # RFC 7162 §3.1.5: with a MODSEQ criterion the highest mod-sequence of the messages
    # returned comes along
    modseq_key = any(isinstance(k, c.SModSeq) for k in c.walk(a.key))
    if returns is None:
        # RFC 5256 §4: "SORT" *(SP nz-number), in sort order
        line = b"SORT" + (b" " + r.number_list(ids) if ids else b"")
        if modseq_key and ids:
            line += b" (MODSEQ %d)" % max(sel.modseqs[i] for i in places)
        s.untagged(line)
        return f"{req.name} completed"
    # RFC 5267 §3.2: an ESEARCH response; MIN / MAX are the first / last in sort order,
    # ALL lists every match in sort order
    parts = [b'ESEARCH (TAG "%s")' % req.tag.encode()]
    if a.uid:
        parts.append(b"UID")
    if ids:
        if "MIN" in returns:
            parts.append(b"MIN %d" % ids[0])
        if "MAX" in returns:
            parts.append(b"MAX %d" % ids[-1])
        if "ALL" in returns:
            parts.append(b"ALL " + b",".join(b"%d" % n for n in ids))
    page = partial.pick(places, a.partial) if a.partial is not None else []
    if ids and modseq_key:
        shown = places
        if not returns & {"ALL", "COUNT"}:  # as ESEARCH: only what is returned counts
            shown = [places[0]] if "MIN" in returns else []
            shown += [places[-1]] if "MAX" in returns else []
            shown += page
        if shown:
            parts.append(b"MODSEQ %d" % max(sel.modseqs[i] for i in shown))
    if "COUNT" in returns:
        parts.append(b"COUNT %d" % len(ids))
    if a.partial is not None:
        # RFC 5267 §4.4 / RFC 9394 §3: the positions asked for, in sort order
        got = [sel.uids[i] if a.uid else i + 1 for i in page]
        listed = b",".join(b"%d" % n for n in got) if got else b"NIL"
        parts.append(b"PARTIAL (%s %s)" % (partial.text(a.partial), listed))
    s.untagged(b" ".join(parts))
    return f"{req.name} completed"


async def thread(s: Session, req: c.Request) -> str:
    a = req.args
    assert isinstance(a, c.Thread)
    sel = selected(s)
    text = b""
    if sel.uids:
        key = _criteria(s, sel, a.key, view=True)
        mailbox_id = sel.mailbox_id
        roots = await _limited(s, key, lambda: account(s).thread(mailbox_id, key, a.algorithm))
        numbers = None
        if not a.uid:
            numbers = {u: i + 1 for i, u in enumerate(sel.uids)}
        text = mailthreads.render(roots, numbers)
    # RFC 5256 §4: "THREAD" [SP 1*thread-list]
    s.untagged(b"THREAD" + (b" " + text if text else b""))
    return f"{req.name} completed"


async def cancelupdate(s: Session, req: c.Request) -> str:
    """RFC 5267 §4.3: stop updating the named search contexts."""
    assert isinstance(req.args, c.CancelUpdate)
    contexts.cancel(s.selected, req.args.tags)
    return "CANCELUPDATE completed"
