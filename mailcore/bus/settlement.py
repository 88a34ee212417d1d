"""Queue machinery shared by the store's delivery consumer and the outbound relay: what
becomes of one bus message of a durable pull consumer — ack, nak with a delay, a requeue
when the consumer's attempts run out, termination of poison — and the mapping of a typed
:mod:`~mailcore.bus.outcome` onto those.

A 250 is a promise: nothing accepted disappears. A caller that gives up (``Failed``)
stores the mail elsewhere first (a dead letter, a bounce), then the message is acked.

Requeue: JetStream keeps a message whose ``max_deliver`` is used up in the stream and
never delivers it again, so on the last attempt the same frame is published again (fresh
attempts, ``Postern-Requeues`` counts it, same mail id so still idempotent) and the old
copy terminated.
"""

from __future__ import annotations

from typing import Any

from nats.js.object_store import ObjectStore
from prometheus_client import Counter

from mailcore.bus import deadletter, names
from mailcore.bus.claimcheck import drop_body
from mailcore.bus.connect import Bus
from mailcore.bus.outcome import Deferred, Delivered, Failed, Outcome
from mailcore.bus.schemas import MailMessage
from mailcore.logging import get_logger

log = get_logger("delivery")

RETRY_DELAY = 30.0  # seconds before a transient failure is retried
MAX_REQUEUES = 5


class QueueSettler:
    """Settles the messages of one consumer on ``subject``'s stream. ``max_deliver`` of 0
    means the consumer has no limit (then a message is never requeued)."""

    def __init__(
        self,
        bus: Bus,
        *,
        subject: str,
        requeued: Counter,
        max_deliver: int = 20,
        retry_delay: float = RETRY_DELAY,
        max_requeues: int = MAX_REQUEUES,
    ) -> None:
        self.bus = bus
        self.subject = subject
        self.requeued = requeued
        self.max_deliver = max_deliver
        self.retry_delay = retry_delay
        self.max_requeues = max_requeues
        self._ack_wait = 0.0
        self._backoff: list[float] = []
        self._bodies: ObjectStore | None = None

    def attach(self, bodies: ObjectStore, *, ack_wait: float, backoff: list[float]) -> None:
        """What the running consumer found on the bus: the claim-check bucket and the
        JetStream consumer's ack wait and back-off (see :meth:`nak`)."""
        self._bodies = bodies
        self._ack_wait = ack_wait
        self._backoff = backoff

    def is_last(self, msg: Any) -> bool:
        return self.max_deliver > 0 and delivery_attempt(msg) >= self.max_deliver

    async def apply(self, msg: Any, mail: MailMessage, outcome: Outcome) -> None:
        """Settle ``msg`` as ``outcome`` says. ``Failed`` means the caller has already
        stored what it gives up on (dead letter, bounce): the message is done."""
        if isinstance(outcome, Delivered | Failed):
            await self.finish(msg, mail)
        elif isinstance(outcome, Deferred):
            if self.is_last(msg):
                await self._requeue(msg, mail, requeues(msg))
            else:
                await self.nak(msg, outcome.delay)

    async def finish(self, msg: Any, mail: MailMessage) -> None:
        """Ack, then drop the claim-checked body (only garbage is left if that fails)."""
        await msg.ack()
        if mail.body_ref is not None and self._bodies is not None:
            try:
                await drop_body(self._bodies, mail)
            except Exception as exc:
                log.warning("claim-checked body not deleted", ref=mail.body_ref, error=str(exc))

    async def retry_later(self, msg: Any, mail: MailMessage | None, *, count: bool = True) -> None:
        """Nak; on the consumer's last attempt (a nak would never be redelivered) publish
        the frame again with fresh attempts instead."""
        if not self.is_last(msg):
            await self.nak(msg, self.retry_delay)
            return
        n = requeues(msg)
        await self._requeue(msg, mail, n + 1 if count else n)

    async def _requeue(self, msg: Any, mail: MailMessage | None, count: int) -> None:
        seq = stream_seq(msg)
        base = mail.id if mail is not None else "raw"
        headers = {
            names.HDR_MSG_ID: f"{base}.requeued.{seq}",
            names.HDR_REQUEUES: str(count),
        }
        schema = (msg.headers or {}).get(names.HDR_SCHEMA) if mail is None else str(mail.v)
        if schema:
            headers[names.HDR_SCHEMA] = schema
        try:
            await self.bus.js.publish(self.subject, msg.data, headers=headers)
        except Exception as exc:
            log.error("requeue failed", id=base, error=f"{type(exc).__name__}: {exc}")
            await self.nak(msg, self.retry_delay)
            return
        self.requeued.inc()
        log.warning(
            "delivery attempts exhausted; requeued", id=base, stream_seq=seq, requeues=count
        )
        await msg.term()

    async def nak(self, msg: Any, delay: float) -> None:
        """Ask for redelivery after ``delay`` seconds.

        With a backoff list on the consumer, nats-server adds ``backoff[n-1] - ack_wait`` to
        a NAK's delay at the n-th delivery (measured on 2.11+); that is taken off again
        here, so the delay is the one asked for, or that extra when it is longer.
        """
        if self._backoff:
            n = min(max(delivery_attempt(msg), 1), len(self._backoff))
            extra = max(0.0, self._backoff[n - 1] - self._ack_wait)
            delay = max(delay - extra, 0.001)
        await msg.nak(delay=delay)

    async def terminate(
        self,
        msg: Any,
        reason: str,
        detail: str,
        *,
        dead_reason: str,
        mail: MailMessage | None = None,
    ) -> None:
        """Poison: kept as a dead letter (raw bytes), then terminated."""
        await deadletter.keep_poison(
            self.bus.js,
            msg,
            reason=reason,
            dead_reason=dead_reason,
            detail=detail,
            mail=mail,
            seq=stream_seq(msg),
        )
        await msg.term()


def delivery_attempt(msg: Any) -> int:
    """Which delivery of the bus message this is (1 for the first)."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


def requeues(msg: Any) -> int:
    """How often this frame was already published again (the ``Postern-Requeues`` header)."""
    try:
        return max(0, int((msg.headers or {}).get(names.HDR_REQUEUES, 0)))
    except (TypeError, ValueError):
        return 0


def stream_seq(msg: Any) -> int | None:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return None
