"""STATUS (RFC 3501 §6.3.10; HIGHESTMODSEQ RFC 7162 §3.1.6; SIZE/DELETED RFC 9051)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore.mailstore import MailboxInfo, MailboxStatus
from services.store.imap import objectid
from services.store.imap.commands import Request, Status
from services.store.imap.handlers.common import enable_condstore, existing

if TYPE_CHECKING:
    from services.store.imap.session import Session


def _value(st: MailboxStatus, item: str) -> int | str:
    if item == "MAILBOXID":
        return f"({objectid.mailbox_id(st.uidvalidity)})"  # RFC 8474 §4.3
    return {
        "MESSAGES": st.messages,
        "RECENT": st.recent,
        "UIDNEXT": st.uidnext,
        "UIDVALIDITY": st.uidvalidity,
        "UNSEEN": st.unseen,
        "HIGHESTMODSEQ": st.highestmodseq,
        "SIZE": st.size,
        "DELETED": st.deleted,
    }[item]


async def status_line(s: Session, box: MailboxInfo, items: tuple[str, ...]) -> bytes:
    assert s.account is not None
    # without SIZE (RFC 8438) the counts come from the kept snapshot: no scan of the rows
    st = await s.account.status(box.id, size="SIZE" in items)
    return render_status(s, box, st, items)


def render_status(s: Session, box: MailboxInfo, st: MailboxStatus, items: tuple[str, ...]) -> bytes:
    if "HIGHESTMODSEQ" in items:
        enable_condstore(s)  # RFC 7162 §3.1: a CONDSTORE enabling command
    body = " ".join(f"{it} {_value(st, it)}" for it in items)
    return b"* STATUS %s (%s)\r\n" % (s.mbox(box.name), body.encode())


async def status(s: Session, req: Request) -> str:
    assert isinstance(req.args, Status)
    assert s.account is not None
    box = await existing(s, req.args.mailbox)
    s.send(await status_line(s, box, req.args.items))
    return "STATUS completed"
