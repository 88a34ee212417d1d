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
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from mailcore.bus import names

REASON_UNKNOWN = "unknown_recipient"
REASON_QUOTA = "quota"
REASON_FAILED = "failed"
REASON_POISON = "poison"
REASON_BODY_MISSING = "body_missing"
RETRYABLE = frozenset((REASON_UNKNOWN, REASON_QUOTA, REASON_FAILED))
_DETAIL_MAX = 300


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
