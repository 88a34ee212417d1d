"""Settlement: the store's policy on top of the shared queue machinery
(:mod:`mailcore.bus.settlement`): what becomes of one inbound bus message after (or
instead of) its delivery by :mod:`services.store.delivery` — ack, nak with a delay,
requeue, terminate or dead-letter, and the forwarding of remote alias targets to ``MAIL_OUTBOUND``.

A 250 is a promise: nothing accepted disappears. What the store cannot deliver goes to
the dead-letter stream (:mod:`mailcore.bus.deadletter`) with the original frame, and a
message is acked only once every recipient is either committed or dead-lettered.

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

When the bus refuses a dead letter (the dead stream is full),
the message stays on the inbound stream (nak, or a requeue on its last attempt): nothing
is acked that is not stored somewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mailcore import metrics
from mailcore.bus import deadletter, names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.outcome import Delivered
from mailcore.bus.schemas import MailMessage
from mailcore.bus.settlement import (
    MAX_REQUEUES,
    RETRY_DELAY,
    QueueSettler,
    delivery_attempt,
    requeues,
    stream_seq,
)
from mailcore.logging import get_logger
from mailcore.mailstore import Delivery, DeliveryResult
from mailcore.mailstore.engine import STORAGE_FULL

__all__ = ["MAX_REQUEUES", "RETRY_DELAY", "Item", "Settler", "delivery_attempt"]

log = get_logger("delivery")

QUOTA_RETRY = 900.0  # seconds between attempts for a full mailbox
UNKNOWN_RETRY = 60.0  # seconds between attempts for a recipient the directory lacks
UNKNOWN_ATTEMPTS = 5


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


class Settler(QueueSettler):
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
        super().__init__(
            bus,
            subject=names.SUBJECT_INBOUND,
            requeued=metrics.DELIVERY_REQUEUED,
            max_deliver=max_deliver,
            retry_delay=retry_delay,
            max_requeues=max_requeues,
        )
        self.pause = pause
        self.quota_retry = quota_retry
        self.unknown_retry = unknown_retry
        self.unknown_attempts = unknown_attempts

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
            n = requeues(item.msg)
            if disk or n < self.max_requeues:
                # A full disk pauses delivery; it does not count towards giving up.
                await self._requeue(item.msg, item.mail, n + (0 if disk else 1))
                return
            detail = f"failed on every attempt of {n + 1} rounds: {failed[0].error}"
            groups: deadletter.Groups = {
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
        await self.apply(item.msg, item.mail, Delivered())
        _count_remote(item)

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
            # Not a tight loop: the message comes back after retry_delay (a requeue with
            # fresh attempts once they run out); the local copies are already stored.
            log.warning(
                "remote alias targets not queued on MAIL_OUTBOUND; deferred",
                id=mail.id,
                targets=item.remote,
                error=_why(exc),
                retry_in=self.retry_delay,
                attempt=delivery_attempt(item.msg),
            )
            await self.retry_later(item.msg, mail)
            return False
        log.info("forwarded to remote alias targets", id=mail.id, to=item.remote)
        return True

    async def _dead_letter(self, item: Item, groups: deadletter.Groups) -> None:
        """Dead-letter, then ack; a refused dead letter keeps the mail on the stream."""
        if not await self._forward(item):
            return
        if not await deadletter.dead_letter(
            self.bus.js, item.msg, item.mail, groups, stream_seq(item.msg)
        ):
            await self.retry_later(item.msg, item.mail, count=False)
            return
        await item.msg.ack()
        _count_remote(item)


def _count_remote(item: Item) -> None:
    if item.remote:
        metrics.DELIVERIES.labels("forwarded").inc(len(item.remote))


def _why(exc: Exception) -> str:
    """A bus refusal's own words (a full stream says "maximum bytes exceeded")."""
    return getattr(exc, "description", None) or f"{type(exc).__name__}: {exc}"
