"""APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3). The literal's size was
checked against the message size limit before the continuation (session framing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap.commands import Append, Request
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import account, quota, target

if TYPE_CHECKING:
    from services.store.imap.session import Session


async def append(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, Append)
    if len(a.data) > s.rt.max_message_size:
        raise Refused("Message too large", code="TOOBIG")
    if not a.data:
        raise Refused("Empty message", code="CANNOT")
    box = await target(s, a.mailbox)
    flags = [f for f in a.flags if f.lower() != "\\recent"]
    when = a.date.timestamp() if a.date is not None else None
    res = await account(s).append(
        box.id, a.data, flags=flags, internal_date=when, quota=quota(s), verbatim=a.binary
    )
    return f"[APPENDUID {res.uidvalidity} {res.uid}] APPEND completed"
