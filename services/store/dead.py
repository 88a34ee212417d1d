"""What the store does with mail it gives up on: dead letters (see
:mod:`mailcore.bus.deadletter`), published before the inbound message is acked or
terminated, logged at error level and counted.

:func:`dead_letter` reports whether every letter was stored: when the bus refuses one
(the dead stream is full: discard new), the caller keeps the mail on the inbound stream,
so nothing is acked that is not stored somewhere.
"""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext

from mailcore import metrics
from mailcore.bus import deadletter
from mailcore.bus.schemas import MailMessage
from mailcore.logging import get_logger

log = get_logger("delivery")

# reason -> (recipients concerned, one-line detail)
Groups = dict[str, tuple[list[str], str]]


async def dead_letter(
    js: JetStreamContext, msg: Any, mail: MailMessage, groups: Groups, seq: int | None
) -> bool:
    """Publish one dead letter per reason (the frame unchanged); True when all are stored.
    The claim-checked body stays in the Object Store: the letters refer to it."""
    published: list[tuple[str, list[str], int]] = []
    try:
        for reason, (rcpts, detail) in groups.items():
            ack = await deadletter.publish_dead(
                js,
                msg.data,
                reason=reason,
                recipients=rcpts,
                message_id=mail.id,
                detail=detail,
                source_seq=seq,
            )
            published.append((reason, rcpts, int(ack.seq)))
    except Exception as exc:
        metrics.DELIVERY_DEAD_LETTER_FAILURES.inc()
        log.error(
            "DEAD LETTER NOT STORED: the mail stays on the inbound stream",
            id=mail.id,
            reasons=list(groups),
            error=f"{type(exc).__name__}: {exc}",
            stream_seq=seq,
        )
        return False
    for reason, rcpts, dead_seq in published:
        metrics.DELIVERY_DEAD_LETTERED.labels(reason).inc()
        if reason == deadletter.REASON_UNKNOWN:
            metrics.DELIVERIES.labels("unknown_recipient").inc(len(rcpts))
        log.error(
            "mail dead-lettered",
            reason=reason,
            id=mail.id,
            sender=mail.mail_from,
            recipients=rcpts,
            dead_seq=dead_seq,
            stream_seq=seq,
        )
    return True


async def keep_poison(
    js: JetStreamContext,
    msg: Any,
    *,
    reason: str,
    dead_reason: str,
    detail: str,
    mail: MailMessage | None,
    seq: int | None,
) -> None:
    """A payload no retry can deliver: its raw bytes become a dead letter for an operator
    to see; the caller terminates it. A refused letter is only logged — retrying poison
    would never make it deliverable."""
    metrics.DELIVERY_TERMINATED.labels(reason).inc()
    dead_seq: int | None = None
    try:
        ack = await deadletter.publish_dead(
            js,
            msg.data,
            reason=dead_reason,
            recipients=mail.recipients if mail else [],
            message_id=mail.id if mail else "",
            detail=detail,
            source_seq=seq,
        )
        dead_seq = int(ack.seq)
        metrics.DELIVERY_DEAD_LETTERED.labels(dead_reason).inc()
    except Exception as exc:
        metrics.DELIVERY_DEAD_LETTER_FAILURES.inc()
        log.error("dead letter of a poison message not stored", error=str(exc), stream_seq=seq)
    log.error(
        "bus message terminated",
        reason=reason,
        detail=detail,
        id=mail.id if mail else None,
        sender=mail.mail_from if mail else None,
        stream_seq=seq,
        dead_seq=dead_seq,
    )
