"""Small helpers shared by handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore.mailstore import MailboxInfo, Quota
from services.store.imap import errors
from services.store.imap.errors import Refused

if TYPE_CHECKING:
    from mailcore.mailstore import Account
    from services.store.imap.selected import Selected
    from services.store.imap.session import Session


def account(s: Session) -> Account:
    assert s.account is not None
    return s.account


def selected(s: Session) -> Selected:
    assert s.selected is not None
    return s.selected


def writable(s: Session) -> Selected:
    sel = selected(s)
    if sel.readonly:
        raise Refused("Mailbox is read-only", code="READ-ONLY")
    return sel


def quota(s: Session) -> Quota:
    """The user's limits as the directory has them now (they may change at any time)."""
    assert s.user is not None
    u = s.rt.directory.user(s.user.address) or s.user
    return Quota(bytes=u.quota_bytes, messages=u.quota_messages)


async def target(s: Session, name: str) -> MailboxInfo:
    """RFC 3501 §6.3.11, §6.4.7: a missing destination answers NO [TRYCREATE]."""
    with errors.destination():
        return await account(s).mailbox(name)
