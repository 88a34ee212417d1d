"""Settlement: what becomes of one inbound bus message after (or instead of) its delivery
by :mod:`services.store.delivery` — ack, nak with a delay, requeue, terminate or
dead-letter, and the forwarding of remote alias targets to ``MAIL_OUTBOUND``.

A 250 is a promise: nothing accepted disappears. What the store cannot deliver goes to
the dead-letter stream (:mod:`mailcore.bus.deadletter`, published by
:mod:`services.store.dead`) with the original frame, and a message is acked only once
every recipient is either committed or dead-lettered.

Outcomes per bus message:

* poison (unknown schema version, undecodable, body object missing): dead-lettered
  (reason ``poison``/``body_missing``) and terminated, counted in
  ``postern_delivery_terminated_total{reason}`` and logged; the consumer goes on;
* a recipient the directory does not resolve (even when read afresh): the message is
  nacked and retried every ``unknown_retry`` seconds; after ``unknown_attempts`` attempts
  the mail for that recipient is dead-lettered (``unknown_recipient``). Resolved
  recipients are delivered at once (redelivery is idempotent);
* disk full: nak with a delay; the consumer is told to pause (it stops fetching until a
  probe write succeeds);
* other transient failure: nak with a delay; when the consumer's attempts run out the
  frame is published again (fresh attempts, ``Postern-Requeues`` counts it) and the old
  copy dropped, so it is never stuck; after ``max_requeues`` requeues it is dead-lettered
  (``failed``). A full disk does not count as a requeue: delivery pauses instead;
* over quota: a temporary failure, like Postfix deferring on Dovecot's "mailbox full":
  retried every ``QUOTA_RETRY`` seconds while attempts remain (so freeing space or
  raising the quota lets it in); on the consumer's last attempt it is dead-lettered
  (``quota``) and logged at error level — the relay issue turns that into a bounce;
* delivered: copies for remote alias targets are published to the outbound stream, then
  the message is acked and its claim-checked body dropped.

When the bus refuses a dead letter (the dead stream is full; :mod:`services.store.dead`),
the message stays on the inbound stream (nak, or a requeue on its last attempt): nothing
is acked that is not stored somewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nats.js.object_store import ObjectStore

from mailcore import metrics
from mailcore.bus import deadletter, names
from mailcore.bus.claimcheck import drop_body, publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage
from mailcore.logging import get_logger
from mailcore.mailstore import Delivery, DeliveryResult
from mailcore.mailstore.engine import STORAGE_FULL
from services.store import dead

log = get_logger("delivery")

RETRY_DELAY = 30.0  # seconds before a transient failure is retried
QUOTA_RETRY = 900.0  # seconds between attempts for a full mailbox
UNKNOWN_RETRY = 60.0  # seconds between attempts for a recipient the directory lacks
UNKNOWN_ATTEMPTS = 5
MAX_REQUEUES = 5


@dataclass(slots=True)
class Item:
    """One bus message of a batch and the recipient copies it became."""

    msg: Any  # nats.aio.msg.Msg
    mail: MailMessage
    copies: list[Delivery] = field(default_factory=list)
    # account id -> the user's address (what a dead letter for that mailbox names)
    addresses: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # recipients that did not resolve
    remote: list[str] = field(default_factory=list)  # remote alias targets to forward


class Settler:
    """Acks, naks, requeues, terminates and dead-letters bus messages for the delivery
    consumer; ``pause`` is called when a copy failed because the disk is full."""

    def __init__(
        self,
        bus: Bus,
        *,
        pause: Callable[[], None],
        max_deliver: int = 20,
        retry_delay: float = RETRY_DELAY,
        quota_retry: float = QUOTA_RETRY,
        unknown_retry: float = UNKNOWN_RETRY,
        unknown_attempts: int = UNKNOWN_ATTEMPTS,
        max_requeues: int = MAX_REQUEUES,
    ) -> None:
        self.bus = bus
        self.pause = pause
        self.max_deliver = max_deliver
        self.retry_delay = retry_delay
        self.quota_retry = quota_retry
        self.unknown_retry = unknown_retry
        self.unknown_attempts = unknown_attempts
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

    async def settle(self, item: Item, results: list[DeliveryResult]) -> None:
        spam = item.mail.scan.spam_tagged
        for r in results:
            outcome = "junk" if r.outcome == "delivered" and spam else r.outcome
            metrics.DELIVERIES.labels(outcome).inc()
        failed = [r for r in results if r.outcome == "failed"]
        over_quota = [r for r in results if r.outcome == "quota"]
        attempt = delivery_attempt(item.msg)
        last = attempt >= self.max_deliver
        if failed:
            disk = any(r.error == STORAGE_FULL for r in failed)
            if disk:
                self.pause()
            else:
                log.warning("delivery failed", id=item.mail.id, error=failed[0].error)
            if not last:
                await self.nak(item.msg, self.retry_delay)
                return
            requeues = _requeues(item.msg)
            if disk or requeues < self.max_requeues:
                # A full disk pauses delivery; it does not count towards giving up.
                await self._requeue(item.msg, item.mail, requeues + (0 if disk else 1))
                return
            detail = f"failed on every attempt of {requeues + 1} rounds: {failed[0].error}"
            groups: dead.Groups = {
                deadletter.REASON_FAILED: (self._addresses(item, failed), detail)
            }
            if over_quota:
                groups[deadletter.REASON_QUOTA] = (
                    self._addresses(item, over_quota),
                    "mailbox full until the last attempt",
                )
            if item.unknown:
                groups[deadletter.REASON_UNKNOWN] = (item.unknown, "not in the directory")
            await self._dead_letter(item, groups)
            return
        if over_quota and not last:
            log.info("mailbox full, retrying later", id=item.mail.id, attempt=attempt)
            await self.nak(item.msg, self.quota_retry)
            return
        if item.unknown and attempt < min(self.unknown_attempts, self.max_deliver):
            await self.nak(item.msg, self.unknown_retry)
            return
        if over_quota or item.unknown:
            groups = {}
            if over_quota:
                groups[deadletter.REASON_QUOTA] = (
                    self._addresses(item, over_quota),
                    "mailbox full until the last attempt",
                )
            if item.unknown:
                groups[deadletter.REASON_UNKNOWN] = (
                    item.unknown,
                    f"not in the directory after {attempt} attempts",
                )
            await self._dead_letter(item, groups)
            return
        if not await self._forward(item):
            return
        await item.msg.ack()
        _count_remote(item)
        if item.mail.body_ref is not None and self._bodies is not None:
            try:
                await drop_body(self._bodies, item.mail)
            except Exception as exc:  # only garbage is left: the mail is stored
                log.warning(
                    "claim-checked body not deleted", ref=item.mail.body_ref, error=str(exc)
                )

    @staticmethod
    def _addresses(item: Item, results: Iterable[DeliveryResult]) -> list[str]:
        """The mailbox addresses of the copies ``results`` name (a retry goes to them
        directly, not through an alias that would reach others too)."""
        out: list[str] = []
        for r in results:
            account = r.key.rpartition("/")[2]
            address = item.addresses.get(account, account)
            if address not in out:
                out.append(address)
        return out

    async def _forward(self, item: Item) -> bool:
        """Hand the copies for remote alias targets to the outbound stream (the relay
        delivers them) before the inbound message is acked; False after a nak.

        The forwarded message's id derives from the original, so a redelivery within the
        duplicate window is stored once (JetStream Nats-Msg-Id)."""
        if not item.remote:
            return True
        mail = item.mail
        forward = MailMessage(
            id=f"{mail.id}.fwd",
            mail_from=mail.mail_from,
            recipients=list(item.remote),
            size=len(mail.body),
            received_at=mail.received_at,
            client=mail.client,
            scan=mail.scan,
        )
        try:
            assert self._bodies is not None
            await publish_mail(
                self.bus.js, self._bodies, names.SUBJECT_OUTBOUND, forward, mail.body
            )
        except Exception as exc:
            log.warning(
                "forward to outbound failed", id=mail.id, error=f"{type(exc).__name__}: {exc}"
            )
            await self.retry_later(item.msg, mail)
            return False
        log.info("forwarded to remote alias targets", id=mail.id, to=item.remote)
        return True

    async def _dead_letter(self, item: Item, groups: dead.Groups) -> None:
        """Dead-letter, then ack; a refused dead letter keeps the mail on the stream."""
        if not await self._forward(item):
            return
        if not await dead.dead_letter(
            self.bus.js, item.msg, item.mail, groups, _stream_seq(item.msg)
        ):
            await self.retry_later(item.msg, item.mail, count=False)
            return
        await item.msg.ack()
        _count_remote(item)

    async def retry_later(self, msg: Any, mail: MailMessage | None, *, count: bool = True) -> None:
        """Nak; on the consumer's last attempt (a nak would never be redelivered) publish
        the frame again with fresh attempts instead."""
        if delivery_attempt(msg) < self.max_deliver:
            await self.nak(msg, self.retry_delay)
            return
        requeues = _requeues(msg)
        await self._requeue(msg, mail, requeues + 1 if count else requeues)

    async def _requeue(self, msg: Any, mail: MailMessage | None, requeues: int) -> None:
        """A temporary failure outlasted the consumer's attempts: publish the same frame
        again (fresh attempts, same mail id, so still idempotent), then drop the old one.
        JetStream would otherwise keep it in the stream and never deliver it again."""
        seq = _stream_seq(msg)
        base = mail.id if mail is not None else "raw"
        headers = {
            names.HDR_MSG_ID: f"{base}.requeued.{seq}",
            names.HDR_REQUEUES: str(requeues),
        }
        schema = (msg.headers or {}).get(names.HDR_SCHEMA) if mail is None else str(mail.v)
        if schema:
            headers[names.HDR_SCHEMA] = schema
        try:
            await self.bus.js.publish(names.SUBJECT_INBOUND, msg.data, headers=headers)
        except Exception as exc:
            log.error("requeue failed", id=base, error=f"{type(exc).__name__}: {exc}")
            await self.nak(msg, self.retry_delay)
            return
        metrics.DELIVERY_REQUEUED.inc()
        log.warning(
            "delivery attempts exhausted; requeued", id=base, stream_seq=seq, requeues=requeues
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
        await dead.keep_poison(
            self.bus.js,
            msg,
            reason=reason,
            dead_reason=dead_reason,
            detail=detail,
            mail=mail,
            seq=_stream_seq(msg),
        )
        await msg.term()


def delivery_attempt(msg: Any) -> int:
    """Which delivery of the bus message this is (1 for the first)."""
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


def _count_remote(item: Item) -> None:
    if item.remote:
        metrics.DELIVERIES.labels("forwarded").inc(len(item.remote))


def _requeues(msg: Any) -> int:
    """How often this frame was already published again (the ``Postern-Requeues`` header)."""
    try:
        return max(0, int((msg.headers or {}).get(names.HDR_REQUEUES, 0)))
    except (TypeError, ValueError):
        return 0


def _stream_seq(msg: Any) -> int | None:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return None
