"""APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3). The literal's size was
checked against the message size limit before the continuation (session framing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap import responses as r
from services.store.imap.commands import Append, Request
from services.store.imap.errors import Refused
from services.store.imap.handlers import catenate
from services.store.imap.handlers.common import account, quota, target

if TYPE_CHECKING:
    import datetime

    from services.store.imap.session import Session


async def over_quota(s: Session, size: int, count: int = 1) -> bool:
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
    return bool(limits.messages and used_messages + count > limits.messages)


async def append(s: Session, req: Request) -> str:
    a = req.args
    assert isinstance(a, Append)
    msgs = a.messages
    if any(m.utf8 for m in msgs) and "UTF8=ACCEPT" not in s.enabled:
        # RFC 6855 §4: the UTF8 data item only after ENABLE UTF8=ACCEPT
        raise Refused("ENABLE UTF8=ACCEPT first", code="CANNOT")
    if any(m.catenate for m in msgs):
        # RFC 4469 §5: every message is put together before any is stored
        msgs = tuple([await catenate.build(s, m) if m.catenate else m for m in msgs])
    # every message is checked before any is stored (RFC 3502 §3: all or none)
    for m in msgs:
        if len(m.data) > s.rt.max_message_size:
            raise Refused("Message too large", code="TOOBIG")
        if not m.data:
            raise Refused("Empty message", code="CANNOT")
    if any(m.binary for m in msgs):
        s.speaks_binary = True
    box = await target(s, a.mailbox)
    if len(msgs) == 1:
        one = msgs[0]
        # RFC 3501 §6.3.11: into the selected mailbox, "the normal new message actions
        # SHOULD occur": this session announces the message (EXISTS after the command),
        # so it is the first to be notified and the message is \Recent to it (§2.3.2,
        # §7.3.2), claimed in the APPEND's own transaction — no second write to claim it
        sel = s.selected
        claim = sel is not None and sel.mailbox_id == box.id and not sel.readonly and not s.rev2
        res = await account(s).append(
            box.id,
            one.data,
            flags=_flags(one.flags),
            internal_date=_when(one.date),
            quota=quota(s),
            verbatim=one.binary,
            claim_recent=claim,
        )
        if claim and sel is not None:
            sel.claimed.add(res.uid)
        return f"[APPENDUID {res.uidvalidity} {res.uid}] APPEND completed"
    # RFC 3502 §6.3.11: one transaction; RFC 4315 §3: APPENDUID with the UID set
    many = await account(s).append_many(
        box.id,
        [(m.data, _flags(m.flags), _when(m.date), m.binary) for m in msgs],
        quota=quota(s),
    )
    uids = r.seq_set(res.uid for res in many).decode()
    return f"[APPENDUID {many[0].uidvalidity} {uids}] APPEND completed"


def _flags(flags: tuple[str, ...]) -> list[str]:
    return [f for f in flags if f.lower() != "\\recent"]


def _when(date: datetime.datetime | None) -> float | None:
    return date.timestamp() if date is not None else None
