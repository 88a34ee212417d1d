"""STARTTLS, NOOP, QUIT, VRFY, HELP, and the commands we do not implement."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.filter.smtp import replies

if TYPE_CHECKING:
    from services.filter.smtp.session import Session


async def starttls(s: Session, arg: str) -> None:
    """RFC 3207 §4."""
    if arg:
        s.error(replies.SYNTAX_NO_ARGS)
    elif s.state.tls:
        s.error(replies.ALREADY_TLS)
    elif s.ctx.tls is None:
        s.reply(replies.TLS_UNAVAILABLE)
    else:
        await s.start_tls()


async def noop(s: Session, arg: str) -> None:
    """RFC 5321 §4.1.1.9: the argument is ignored."""
    s.reply(replies.OK)


async def quit(s: Session, arg: str) -> None:
    """RFC 5321 §4.1.1.10."""
    s.reply(replies.BYE)
    s.state.tx = None
    s.close_after_reply()


async def vrfy(s: Session, arg: str) -> None:
    """RFC 5321 §3.5.3: 252 tells nothing about who exists."""
    if not arg.strip():
        s.error(replies.SYNTAX)
    else:
        s.reply(replies.VRFY)


async def help_(s: Session, arg: str) -> None:
    s.reply(replies.HELP)


async def not_implemented(s: Session, arg: str) -> None:
    s.error(replies.NOT_IMPLEMENTED)
