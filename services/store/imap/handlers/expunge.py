"""EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap.commands import Expunge, Request
from services.store.imap.handlers.common import account, writable

if TYPE_CHECKING:
    from services.store.imap.session import Session


async def expunge(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, Expunge)
    sel = writable(s)
    if a.uids is None:
        gone = await account(s).expunge(sel.mailbox_id)
    else:
        uids = [sel.uids[i] for i in sel.resolve(a.uids, uid=True)]
        gone = await account(s).expunge(sel.mailbox_id, uids) if uids else []
    sel.remove(s, gone)
    return f"{req.name} completed"
