"""EHLO and HELO (RFC 5321 §4.1.1.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.filter.smtp import replies
from services.filter.smtp.parser import CommandSyntaxError, parse_hello

if TYPE_CHECKING:
    from services.filter.smtp.session import Session


def _start(s: Session, arg: str, *, esmtp: bool) -> bool:
    try:
        name = parse_hello(arg)
    except CommandSyntaxError:
        s.error(replies.SYNTAX_HELO)
        return False
    st = s.state
    st.helo = name
    st.esmtp = esmtp
    st.tx = None  # RFC 5321 §4.1.4: EHLO/HELO also reset the transaction
    return True


async def ehlo(s: Session, arg: str) -> None:
    if not _start(s, arg, esmtp=True):
        return
    # RFC 2034 §3: no enhanced status codes in EHLO replies.
    lines = [
        s.ctx.hostname,
        "PIPELINING",  # RFC 2920
        f"SIZE {s.ctx.settings.max_message_size}",  # RFC 1870
        "8BITMIME",  # RFC 6152
        "SMTPUTF8",  # RFC 6531
        "ENHANCEDSTATUSCODES",  # RFC 2034
    ]
    if s.tls_offered:
        lines.append("STARTTLS")  # RFC 3207
    if s.auth_offered:
        lines.append("AUTH PLAIN LOGIN")  # RFC 4954, RFC 4616
    s.send(replies.multiline(250, lines))


async def helo(s: Session, arg: str) -> None:
    if _start(s, arg, esmtp=False):
        s.send(f"250 {s.ctx.hostname}\r\n".encode())
