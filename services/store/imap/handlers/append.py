"""APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3). The literal's size was
checked against the message size limit before the continuation (session framing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap.commands import Append, Request
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import account, quota, target

if TYPE_CHECKING:
    from services.store.imap.session import Session


async def over_quota(s: Session, size: int) -> bool:
    """Whether a message of ``size`` octets would pass the user's quota now: asked before
    the continuation, so an APPEND over quota is refused before the client uploads it
    (RFC 9208 §4.3 / RFC 7889 style; the engine checks again when it stores)."""
    if s.user is None or s.account is None:
        return False
    limits = quota(s)
    if not limits.bytes and not limits.messages:
        return False
    used_bytes, used_messages = await account(s).usage()
    if limits.bytes and used_bytes + size > limits.bytes:
        return True
    return bool(limits.messages and used_messages + 1 > limits.messages)


async def append(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, Append)
    if len(a.data) > s.rt.max_message_size:
        raise Refused("Message too large", code="TOOBIG")
    if not a.data:
        raise Refused("Empty message", code="CANNOT")
    if a.binary:
        s.speaks_binary = True
    box = await target(s, a.mailbox)
    flags = [f for f in a.flags if f.lower() != "\\recent"]
    when = a.date.timestamp() if a.date is not None else None
    res = await account(s).append(
        box.id, a.data, flags=flags, internal_date=when, quota=quota(s), verbatim=a.binary
    )
    return f"[APPENDUID {res.uidvalidity} {res.uid}] APPEND completed"
