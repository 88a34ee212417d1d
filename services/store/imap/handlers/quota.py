"""QUOTA (RFC 9208): one quota root "" per user with STORAGE (KiB) and MESSAGE resources,
as the directory sets them. Users cannot change their own quota (SETQUOTA: NO [NOPERM])."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.imap.commands import QuotaRoot, Request
from services.store.imap.errors import Refused
from services.store.imap.handlers.common import account, existing, quota

if TYPE_CHECKING:
    from services.store.imap.session import Session


async def _quota_line(s: Session) -> bytes:
    limits = quota(s)
    used_bytes, used_messages = await account(s).usage()
    res: list[str] = []
    if limits.bytes:
        # RFC 9208 §5.1: STORAGE is in units of 1024 octets
        res.append(f"STORAGE {(used_bytes + 1023) // 1024} {limits.bytes // 1024}")
    if limits.messages:
        res.append(f"MESSAGE {used_messages} {limits.messages}")
    return b'* QUOTA "" (' + " ".join(res).encode() + b")\r\n"


async def getquota(s: Session, req: Request) -> str:
    assert isinstance(req.args, QuotaRoot)
    if req.args.name != "":
        raise Refused("No such quota root", code="NONEXISTENT")
    s.send(await _quota_line(s))
    return "GETQUOTA completed"


async def getquotaroot(s: Session, req: Request) -> str:
    assert isinstance(req.args, QuotaRoot)
    box = await existing(s, req.args.name)
    s.send(b'* QUOTAROOT %s ""\r\n' % s.mbox(box.name))
    s.send(await _quota_line(s))
    return "GETQUOTAROOT completed"


async def setquota(s: Session, req: Request) -> str:
    raise Refused("Quotas are set by the administrator", code="NOPERM")
