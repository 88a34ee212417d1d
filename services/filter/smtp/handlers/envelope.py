"""MAIL, RCPT and RSET: the envelope of a mail transaction (RFC 5321 §4.1.1.2-5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.filter import errors
from services.filter.smtp import replies
from services.filter.smtp.parser import (
    BadAddress,
    CommandSyntaxError,
    NonAsciiAddress,
    UnsupportedParameter,
    parse_mail,
    parse_rcpt,
)
from services.filter.smtp.state import Transaction

if TYPE_CHECKING:
    from services.filter.smtp.session import Session


async def mail(s: Session, arg: str) -> None:
    st = s.state
    if st.helo is None:
        s.error(replies.NEED_HELO)
        return
    if st.tx is not None:
        s.error(replies.NESTED_MAIL)
        return
    if s.listener.submission and st.user is None:
        # RFC 6409 §4.3 / RFC 3207 §4: submission needs AUTH, and AUTH needs TLS first.
        if not st.tls and not s.ctx.plaintext_auth_allowed(st.client_ip):
            s.reject(replies.STARTTLS_REQUIRED, "tls_required", counts=True)
        else:
            s.reject(replies.AUTH_REQUIRED, "auth_required", counts=True)
        return
    try:
        command = parse_mail(arg)
    except NonAsciiAddress:
        s.error(replies.NON_ASCII_ADDRESS)
        return
    except BadAddress:
        s.error(replies.BAD_SENDER_ADDRESS)
        return
    except UnsupportedParameter as exc:
        s.error(replies.BODY_UNSUPPORTED if str(exc) == "BODY" else replies.PARAM_UNSUPPORTED)
        return
    except CommandSyntaxError:
        s.error(replies.SYNTAX_MAIL)
        return
    if command.params and not st.esmtp:
        s.error(replies.SYNTAX_MAIL)  # RFC 5321 §4.1.1.2: parameters need EHLO
        return
    if command.size is not None and command.size > s.ctx.settings.max_message_size:
        s.reject(replies.MESSAGE_TOO_BIG, "size")  # RFC 1870 §6.1
        return
    if s.ctx.handoff.gate.full:
        s.reject(replies.STORAGE_FULL, "storage_full")
        return
    try:
        s.ctx.policy.check_sender(st.user, command.address)
    except errors.FilterError as exc:
        s.reject(replies.for_error(exc), exc.reason, counts=True)
        return
    st.tx = Transaction(command.address, smtputf8=command.smtputf8, size_hint=command.size)
    s.reply(replies.SENDER_OK)


async def rcpt(s: Session, arg: str) -> None:
    st = s.state
    tx = st.tx
    if tx is None:
        s.error(replies.NEED_MAIL)
        return
    try:
        command = parse_rcpt(arg, smtputf8=tx.smtputf8)
    except NonAsciiAddress:
        s.error(replies.NON_ASCII_ADDRESS)
        return
    except BadAddress:
        s.error(replies.BAD_RECIPIENT_ADDRESS)
        return
    except UnsupportedParameter:
        s.error(replies.PARAM_UNSUPPORTED)
        return
    except CommandSyntaxError:
        s.error(replies.SYNTAX_RCPT)
        return
    if tx.accepted_rcpts >= s.ctx.settings.max_recipients:
        # RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client sends the rest later.
        s.reject(replies.TOO_MANY_RECIPIENTS, "too_many_recipients")
        return
    try:
        route = s.ctx.policy.route(command.address, authenticated=st.user is not None)
    except errors.FilterError as exc:
        s.reject(replies.for_error(exc), exc.reason, counts=True)
        return
    for address in route.local:
        tx.local[address] = None
    for address in route.remote:
        tx.remote[address] = None
    tx.accepted_rcpts += 1
    if tx.first_rcpt is None:
        tx.first_rcpt = command.address
    s.reply(replies.RECIPIENT_OK)


async def rset(s: Session, arg: str) -> None:
    """RFC 5321 §4.1.1.5."""
    if arg.strip():
        s.error(replies.SYNTAX_NO_ARGS)
        return
    s.state.tx = None
    s.reply(replies.OK)
