"""Dead letters: accepted mail the store could not deliver, kept for an operator.

A 250 is a promise, so mail the store gives up on is never dropped: it goes to the
``MAIL_DEAD`` stream (limits retention, discard new, its own byte budget). A dead letter
is the original bus payload unchanged — the mail frame, whose claim-checked body stays in
``MAIL_BODIES`` — plus headers naming the reason, the recipients concerned, the mail id,
the time and a short detail. ``mailctl queue dead`` lists, retries and drops them.

Reasons: ``unknown_recipient`` (the directory never resolved the address), ``quota``
(still over quota on the last attempt), ``failed`` (a temporary failure outlasted every
requeue), ``poison`` (a payload this version cannot decode), ``body_missing`` (its
claim-checked body is gone). Only the first three can be retried.

:func:`dead_letter` and :func:`keep_poison` are what a consumer does with mail it gives
up on (published before the bus message is acked or terminated, logged at error level
and counted); :func:`dead_letter` reports whether every letter was stored: when the bus
refuses one (the dead stream is full: discard new), the caller keeps the mail on its
stream, so nothing is acked that is not stored somewhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from mailcore import metrics
from mailcore.bus import names
from mailcore.bus.schemas import MailMessage
from mailcore.logging import get_logger

REASON_UNKNOWN = "unknown_recipient"
REASON_QUOTA = "quota"
REASON_FAILED = "failed"
REASON_POISON = "poison"
REASON_BODY_MISSING = "body_missing"
RETRYABLE = frozenset((REASON_UNKNOWN, REASON_QUOTA, REASON_FAILED))
_DETAIL_MAX = 300

log = get_logger("delivery")


@dataclass(slots=True)
class DeadLetter:
    """One dead letter as read back from the stream; ``seq`` is the id operators use."""

    seq: int
    reason: str
    recipients: list[str]
    message_id: str
    dead_at: float
    detail: str
    payload: bytes
    source_seq: int | None = None

    @property
    def retryable(self) -> bool:
        return self.reason in RETRYABLE


def dead_headers(
    *,
    reason: str,
    recipients: Iterable[str],
    message_id: str,
    detail: str = "",
    source_seq: int | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """Headers of a dead letter. Values are ASCII (JSON escapes the rest) on one line."""
    at = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    one_line = " ".join(detail.split())[:_DETAIL_MAX]
    headers = {
        names.HDR_DEAD_REASON: reason,
        names.HDR_DEAD_RECIPIENTS: json.dumps(list(recipients), ensure_ascii=True),
        names.HDR_DEAD_MESSAGE_ID: message_id,
        names.HDR_DEAD_TIME: at.isoformat(timespec="milliseconds"),
        names.HDR_DEAD_DETAIL: one_line.encode("ascii", "replace").decode("ascii"),
    }
    if source_seq is not None:
        headers[names.HDR_DEAD_SOURCE_SEQ] = str(source_seq)
        # Publishing the same dead letter twice (a retry after a lost PubAck) stores it once.
        headers[names.HDR_MSG_ID] = f"dead.{reason}.{message_id or '-'}.{source_seq}"
    return headers


async def publish_dead(
    js: JetStreamContext,
    payload: bytes,
    *,
    reason: str,
    recipients: Iterable[str],
    message_id: str,
    detail: str = "",
    source_seq: int | None = None,
    timeout: float = 10.0,
) -> js_api.PubAck:
    """Store a dead letter; raises when the bus refuses it (e.g. the stream is full)."""
    headers = dead_headers(
        reason=reason,
        recipients=recipients,
        message_id=message_id,
        detail=detail,
        source_seq=source_seq,
    )
    return await js.publish(names.SUBJECT_DEAD, payload, timeout=timeout, headers=headers)


def parse_dead(raw: js_api.RawStreamMsg) -> DeadLetter:
    """A dead letter from a stream message (tolerant: a header may be missing)."""
    h = raw.headers or {}
    try:
        recipients = [str(r) for r in json.loads(h.get(names.HDR_DEAD_RECIPIENTS, "[]"))]
    except (ValueError, TypeError):
        recipients = []
    try:
        dead_at = datetime.fromisoformat(h.get(names.HDR_DEAD_TIME, "")).timestamp()
    except ValueError:
        dead_at = raw.time.timestamp() if raw.time else 0.0
    source = h.get(names.HDR_DEAD_SOURCE_SEQ, "")
    return DeadLetter(
        seq=int(raw.seq or 0),
        reason=h.get(names.HDR_DEAD_REASON, "?"),
        recipients=recipients,
        message_id=h.get(names.HDR_DEAD_MESSAGE_ID, ""),
        dead_at=dead_at,
        detail=h.get(names.HDR_DEAD_DETAIL, ""),
        payload=raw.data or b"",
        source_seq=int(source) if source.isdigit() else None,
    )


async def iter_dead(js: JetStreamContext) -> AsyncIterator[DeadLetter]:
    """Every dead letter, oldest first (deleted sequences are skipped by the server)."""
    seq = 1
    while True:
        try:
            raw = await js.get_msg(
                names.STREAM_DEAD, seq=seq, subject=names.SUBJECT_DEAD, next=True
            )
        except NotFoundError:
            return
        letter = parse_dead(raw)
        yield letter
        seq = letter.seq + 1


async def get_dead(js: JetStreamContext, seq: int) -> DeadLetter | None:
    try:
        raw = await js.get_msg(names.STREAM_DEAD, seq=seq)
    except NotFoundError:
        return None
    return parse_dead(raw)


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
            ack = await publish_dead(
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
        if reason == REASON_UNKNOWN:
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
        ack = await publish_dead(
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
