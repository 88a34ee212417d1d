"""Search contexts (RFC 5267 §4, CONTEXT=SEARCH and CONTEXT=SORT): a ``SEARCH`` or
``SORT`` with ``RETURN (UPDATE)`` whose result the server keeps current, sending
``* ESEARCH (TAG "t") [UID] ADDTO (…)`` / ``REMOVETO (…)`` as the mailbox changes, until
``CANCELUPDATE "t"`` or the mailbox is closed (the contexts live in the session's
:class:`~services.store.imap.selected.Selected`).

A context is looked at again whenever the selected view has changed (new messages, flag
changes, expunges: everything reaches the view from the journal, own changes included):
the search or sort runs again and the difference is sent. Messages that left the view by
EXPUNGE (or VANISHED) get no REMOVETO: the expunge already took them out of every result
(§4.2). For a SEARCH the position is 0 (an unordered result, §4.3); for a SORT each added
message comes with its 1-based place in the new order — sort keys never change once a
message is stored, so the messages already in the result keep their relative order and
inserting the additions by increasing place rebuilds the new result exactly. REMOVETO
gives position 0 (the client finds the message itself, §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.store.imap import commands as c
from services.store.imap import responses
from services.store.imap.errors import Refused

if TYPE_CHECKING:
    from services.store.imap.selected import Selected
    from services.store.imap.session import Session

MAX_CONTEXTS = 10  # per session; beyond: the search is answered, with [NOUPDATE] (§4.2)


@dataclass
class Context:
    tag: str
    uid: bool
    key: c.SearchKey
    sort: tuple[tuple[str, bool], ...] | None  # None: a SEARCH (unordered)
    result: list[int]  # UIDs, in result order


def signature(sel: Selected) -> tuple[int, int, int, int]:
    """Changes whenever the view does: new or expunged messages, a flag change (every
    flag change carries a new, higher mod-sequence: RFC 7162 §3.1.1)."""
    return (len(sel.uids), sel.uids[-1] if sel.uids else 0, sel.highestmodseq, len(sel.recent))


def start(s: Session, sel: Selected, ctx: Context) -> None:
    """Keep ``ctx`` (its first result just computed and sent) up to date from now on."""
    tag = ctx.tag
    if tag in sel.contexts:
        del sel.contexts[tag]  # §4.2: a new search with the same tag replaces the old
    if len(sel.contexts) >= MAX_CONTEXTS:
        # §4.2: the result is sent, but it will not be kept up to date
        s.untagged(b'OK [NOUPDATE "%s"] Too many search contexts' % tag.encode())
        return
    sel.contexts[tag] = ctx
    sel.context_seen = signature(sel)


def cancel(sel: Selected | None, tags: tuple[str, ...]) -> None:
    """§4.3 CANCELUPDATE: a tag without a context is an error (BAD)."""
    known = sel.contexts if sel is not None else {}
    if missing := [t for t in tags if t not in known]:
        raise Refused(f"No search context for tag {missing[0][:40]}", status="BAD")
    for t in tags:
        del known[t]


async def refresh(s: Session, sel: Selected) -> None:
    """Send ADDTO / REMOVETO for every context whose result changed since last time."""
    from services.store.imap.handlers.search import matches
    from services.store.imap.handlers.sort import sorted_places

    now = signature(sel)
    if now == sel.context_seen:
        return
    sel.context_seen = now
    for ctx in list(sel.contexts.values()):
        try:
            if ctx.sort is None:
                places = await matches(s, sel, ctx.key)
            else:
                places = await sorted_places(s, sel, ctx.key, ctx.sort)
        except Refused:
            # a search that reads messages ran out of time: the context ends (§4.2)
            del sel.contexts[ctx.tag]
            s.untagged(b'OK [NOUPDATE "%s"] Search context ended' % ctx.tag.encode())
            continue
        new = [sel.uids[i] for i in places]
        if new != ctx.result:
            _send(s, sel, ctx, new)
            ctx.result = new


def _send(s: Session, sel: Selected, ctx: Context, new: list[int]) -> None:
    def number(uid: int) -> int:
        if ctx.uid:
            return uid
        i = sel.index_of(uid)
        assert i is not None
        return i + 1

    now = set(new)
    # gone from the result but still in the view (an expunged message is not reported)
    removed = [u for u in ctx.result if u not in now and sel.index_of(u) is not None]
    before = set(ctx.result)
    head = b'ESEARCH (TAG "%s")%s' % (ctx.tag.encode(), b" UID" if ctx.uid else b"")
    if removed:
        nums = sorted(number(u) for u in removed)
        s.untagged(head + b" REMOVETO (0 %s)" % responses.seq_set(nums))
    added = [(place, u) for place, u in enumerate(new, 1) if u not in before]
    if not added:
        return
    if ctx.sort is None:
        nums = sorted(number(u) for _, u in added)
        s.untagged(head + b" ADDTO (0 %s)" % responses.seq_set(nums))
    else:
        pairs = b" ".join(b"%d %d" % (place, number(u)) for place, u in added)
        s.untagged(head + b" ADDTO (%s)" % pairs)


__all__ = ["MAX_CONTEXTS", "Context", "cancel", "refresh", "start"]
