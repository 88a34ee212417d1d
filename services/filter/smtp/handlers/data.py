"""DATA (RFC 5321 §4.1.1.4): read the message, screen it, add trace headers, hand it to
JetStream, and answer 250 only after the PubAck (architecture invariant 1)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from mailcore import faults, metrics
from mailcore.bus.schemas import ClientInfo, MailMessage, new_message_id
from mailcore.logging import get_logger
from services.filter import dkim_verify, errors, headers
from services.filter.smtp import framing, replies
from services.filter.smtp.state import Transaction

if TYPE_CHECKING:
    from services.filter.smtp.session import Session

log = get_logger("filter.data")


async def data(s: Session, arg: str) -> None:
    st = s.state
    tx = st.tx
    if arg:
        s.error(replies.SYNTAX_NO_ARGS)
        return
    if tx is None:
        s.error(replies.NEED_MAIL)
        return
    if not tx.has_recipients:
        s.error(replies.NEED_RCPT)
        return
    if s.ctx.handoff.gate.full:
        st.tx = None
        s.reject(replies.STORAGE_FULL, "storage_full")
        return
    s.reply(replies.START_DATA)
    message = await s.read_data(s.ctx.settings.max_message_size)
    st.tx = None  # the transaction ends with the data, whatever becomes of it
    if isinstance(message, framing.DataProblem):
        log.info("message refused", reason=message.value)
        s.reject(replies.for_data_problem(message), message.value)
        return
    s.hold_timeout()
    try:
        msg, body = await prepare(s, tx, message)
        # The stamped body holds the client's bytes now: drop the message so a large one
        # is held once while it is handed off, not twice.
        del message
        message_id = await hand_off(s, tx, msg, body)
    except errors.FilterError as exc:
        log.info("message refused", reason=exc.reason, detail=str(exc)[:200])
        s.reject(replies.for_error(exc), exc.reason)
        return
    finally:
        s.release_timeout()
    s.reply(replies.QUEUED.with_text(f"Ok: queued as {message_id}"))
    faults.crash_soon("filter.after_250", 0.05)  # once the reply is flushed


async def prepare(s: Session, tx: Transaction, message: bytes) -> tuple[MailMessage, bytes]:
    """Screen and stamp one message: its bus header and body, or raise a FilterError."""
    ctx, st = s.ctx, s.state
    authenticated = st.user is not None
    screening = ctx.screening.screen(
        message, spam_check=not authenticated or ctx.settings.scan_authenticated
    )
    if ctx.dkim is not None and not authenticated and dkim_verify.has_signature(message):
        verdict, dkim_results = await asyncio.gather(screening, ctx.dkim.check(message))
    else:
        verdict, dkim_results = await screening, []
    faults.crash_point("filter.after_scan")
    message_id = new_message_id()
    now = time.time()
    protocol = headers.protocol_name(
        esmtp=st.esmtp, tls=st.tls, authenticated=authenticated, smtputf8=tx.smtputf8
    )
    single = tx.first_rcpt if tx.accepted_rcpts == 1 else None
    added = [
        headers.received(
            helo=st.helo,
            ip=st.client_ip,
            hostname=ctx.hostname,
            protocol=protocol,
            message_id=message_id,
            recipient=single,
            tls_version=st.tls_version,
            when=now,
        ),
        headers.authentication_results(
            ctx.hostname,
            st.user.address if st.user else None,
            [result.render() for result in dkim_results],
        ),
        *verdict.headers,
    ]
    body = headers.stamp(added, message, ctx.hostname)
    msg = MailMessage(
        id=message_id,
        mail_from=tx.mail_from,
        recipients=[],
        size=len(body),
        received_at=now,
        client=ClientInfo(
            ip=st.client_ip,
            helo=st.helo or "",
            auth_user=st.user.address if st.user else None,
            tls=st.tls,
            listener=st.listener.name,
        ),
        scan=verdict.scan,
    )
    return msg, body


async def hand_off(s: Session, tx: Transaction, msg: MailMessage, body: bytes) -> str:
    """Publish and wait for the PubAck (then, and only then, the message is ours)."""
    ctx, st = s.ctx, s.state
    faults.crash_soon("filter.during_publish")
    await ctx.handoff.publish(msg, body, local=list(tx.local), remote=list(tx.remote))
    faults.crash_point("filter.after_puback")
    metrics.SMTP_ACCEPTED.labels(st.listener.name).inc()
    log.info(
        "accepted",
        id=msg.id,
        size=len(body),
        local=len(tx.local),
        remote=len(tx.remote),
        spam_score=msg.scan.spam_score,
        tagged=msg.scan.spam_tagged,
    )
    return msg.id
