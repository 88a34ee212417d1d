"""SELECT / EXAMINE (RFC 3501 §6.3.1–2, RFC 7162 CONDSTORE/QRESYNC), CHECK (§6.4.1),
CLOSE (§6.4.2) and UNSELECT (RFC 3691)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap import objectid
from services.store.imap import responses as r
from services.store.imap.commands import Request, Select
from services.store.imap.errors import bad
from services.store.imap.handlers.common import existing
from services.store.imap.selected import Selected

if TYPE_CHECKING:
    from services.store.imap.session import Session


def deselect(s: Session) -> None:
    from services.store.imap.session import State

    if s.selected is not None and (s.qresync or s.rev2):
        # RFC 7162 §3.2.11, RFC 9051 §6.3.2
        s.untagged("OK [CLOSED] Previous mailbox closed")
    s.selected = None
    if s.state is State.SELECTED:
        s.state = State.AUTHENTICATED


async def select(s: Session, req: Request) -> str:
    from services.store.imap.session import State

    a = req.args
    assert isinstance(a, Select)
    assert s.account is not None
    if a.qresync is not None and not s.qresync:
        raise bad("QRESYNC is not enabled")  # RFC 7162 §3.2.5
    deselect(s)
    box = await existing(s, a.mailbox)
    snap = await s.account.snapshot(box.id)
    # RFC 3501 §6.3.1: a mailbox the client may read but not change is selected
    # read-only, [READ-ONLY] on the tagged OK: every mailbox of a read-only replica
    readonly = a.readonly or s.account.read_only
    sel = Selected(box.id, box.name, readonly, snap)
    await sel.take_recent(s)  # EXAMINE reports \Recent without claiming (RFC 3501 §6.3.2)
    if a.condstore:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1.8
    sel.flags_lines(s)
    s.untagged(f"{len(sel)} EXISTS")
    if s.rev2:
        # RFC 9051 §6.3.2: a LIST response for the mailbox; no RECENT, no [UNSEEN]
        names = {b.name for b in await s.account.list_mailboxes()}
        prefix = box.name + "/"
        attrs = ["\\HasChildren" if any(n.startswith(prefix) for n in names) else "\\HasNoChildren"]
        if box.special_use:
            attrs.append(box.special_use)
        s.send(b'* LIST (%s) "/" %s\r\n' % (" ".join(attrs).encode(), s.mbox(box.name)))
    else:
        s.untagged(f"{len(sel.recent)} RECENT")
        first_unseen = next((i + 1 for i, f in enumerate(sel.flags) if "\\Seen" not in f), None)
        if first_unseen is not None:
            s.untagged(f"OK [UNSEEN {first_unseen}] First unseen")
    s.untagged(f"OK [UIDVALIDITY {sel.uidvalidity}] UIDs valid")
    s.untagged(f"OK [UIDNEXT {sel.uidnext}] Predicted next UID")
    s.untagged(f"OK [MAILBOXID ({objectid.mailbox_id(sel.uidvalidity)})] Ok")  # RFC 8474 §4.2
    if s.condstore:
        s.untagged(f"OK [HIGHESTMODSEQ {sel.highestmodseq}] Highest")
    if a.qresync is not None and a.qresync[0] == sel.uidvalidity:
        await _qresync(s, sel, a.qresync[1], a.qresync[2])
    s.selected = sel
    s.state = State.SELECTED
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    done = f"[{mode}] {'EXAMINE' if a.readonly else 'SELECT'} completed"
    return done + (", this server is a read-only replica" if readonly != a.readonly else "")


async def _qresync(s: Session, sel: Selected, modseq: int, known: object) -> None:
    """RFC 7162 §3.2.5.1: VANISHED (EARLIER) for what was expunged since ``modseq``, then
    FETCH for every message changed since."""
    from services.store.imap.commands import SeqSet

    assert s.account is not None
    gone = await s.account.expunged_since(sel.mailbox_id, modseq)
    if isinstance(known, SeqSet):
        largest = max(gone, default=0)
        gone = [u for u in gone if known.contains(u, largest)]
    if gone:
        s.untagged(b"VANISHED (EARLIER) " + r.seq_set(sorted(gone)))
    for i, m in enumerate(sel.modseqs):
        if m > modseq:
            s.send(sel.flags_response(s, i))


async def close(s: Session, req: Request) -> str:
    # RFC 3501 §6.4.2: expunge silently (no EXPUNGE responses) unless read-only
    assert s.account is not None and s.selected is not None
    if not s.selected.readonly:
        await s.account.expunge(s.selected.mailbox_id)
    s.selected = None
    deselect(s)
    return "CLOSE completed"


async def unselect(s: Session, req: Request) -> str:
    # RFC 3691 §2
    s.selected = None
    deselect(s)
    return "UNSELECT completed"


async def check(s: Session, req: Request) -> str:
    # RFC 3501 §6.4.1: every change is already committed; pending updates follow
    return "CHECK completed"
