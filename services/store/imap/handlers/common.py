"""Small helpers shared by handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore.mailstore import MailboxInfo, Quota
from services.store.imap import errors
from services.store.imap.errors import Refused
from services.store.imap.utf7 import Undecodable

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
        replica = s.account is not None and s.account.read_only
        text = "This server is a read-only replica" if replica else "Mailbox is read-only"
        raise Refused(text, code="READ-ONLY")
    return sel


def enable_condstore(s: Session) -> None:
    """RFC 7162 §3.1: a CONDSTORE enabling command. The first one issued while a mailbox
    is selected (and not selected with CONDSTORE) sends ``* OK [HIGHESTMODSEQ n]``."""
    if s.condstore:
        return
    s.enabled.add("CONDSTORE")
    if s.selected is not None:
        s.untagged(f"OK [HIGHESTMODSEQ {s.selected.highestmodseq}] Highest")


def quota(s: Session) -> Quota:
    """The user's limits as the directory has them now (they may change at any time)."""
    assert s.user is not None
    u = s.rt.directory.user(s.user.address) or s.user
    return Quota(bytes=u.quota_bytes, messages=u.quota_messages)


async def target(s: Session, name: str) -> MailboxInfo:
    """RFC 3501 §6.3.11, §6.4.7: a missing destination answers NO [TRYCREATE]."""
    new_name(name)
    with errors.destination():
        return await account(s).mailbox(name)


async def existing(s: Session, name: str) -> MailboxInfo:
    """The mailbox a command names; one whose name is not canonical modified UTF-7 does
    not exist (RFC 3501 §5.1.3), answered ``NO [NONEXISTENT]`` (RFC 5530)."""
    if isinstance(name, Undecodable):
        raise Refused("No such mailbox", code="NONEXISTENT")
    return await account(s).mailbox(name)


def new_name(name: str) -> None:
    """A name to create (CREATE, RENAME, SUBSCRIBE, a TRYCREATE target) must be canonical
    modified UTF-7 (RFC 3501 §5.1.3): otherwise NO with the reason."""
    if isinstance(name, Undecodable):
        raise Refused(
            "Mailbox name is not canonical modified UTF-7 (RFC 3501 section 5.1.3)",
            code="CANNOT",
        )
