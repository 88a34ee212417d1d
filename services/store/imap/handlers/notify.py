"""NOTIFY (RFC 5465 §3): set or clear the events this session is told about unasked.
The watching and delivery live in :mod:`services.store.imap.notify`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap import commands as c
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import account
from services.store.imap.notify import SUPPORTED, Watch, status_line

if TYPE_CHECKING:
    from services.store.imap.session import Session


async def notify(s: Session, req: c.Request) -> str:
    a = req.args
    assert isinstance(a, c.Notify)
    if a.groups is None:
        s.notify = None  # §3: NOTIFY NONE, back to RFC 3501 behaviour
        return "NOTIFY completed"
    asked = {e for g in a.groups for e in g.events}
    if asked - set(SUPPORTED):
        # §5: an event the server does not deliver is refused, naming the ones it does
        raise Refused("Unsupported event", code=f"BADEVENT ({' '.join(SUPPORTED)})")
    acct = account(s)
    # the journal position first: whatever commits after it is delivered
    seen = acct.change_seq
    boxes = await acct.list_mailboxes()
    subscribed = set(await acct.subscriptions())
    watch = Watch(a.groups, seen, {b.id: b.name for b in boxes}, subscribed)
    s.notify = watch
    if a.status:
        # §3: with STATUS, the current state of every mailbox the non-selected filters
        # name comes first (never the selected one: SELECT told it)
        sel_id = s.selected.mailbox_id if s.selected is not None else None
        for mailbox_id, name in watch.watched():
            if mailbox_id != sel_id:
                s.send(status_line(s, name, await acct.status(mailbox_id), None))
    return "NOTIFY completed"
