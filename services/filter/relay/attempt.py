"""One delivery attempt of one outbound message: split off local recipients (they never
leave the system: back to ``MAIL_INBOUND``), one SMTP transaction per remote domain at
once (each under its destination's concurrency limit), then record every answer in the
queue state and decide the typed outcome:

* every recipient accepted (or bounced) → ``Delivered`` / ``Failed``;
* a temporary failure left → ``Deferred`` until the next step of the retry schedule; once
  the mail is older than ``max_age`` those recipients are bounced as expired (4.4.7), and
  after ``delay_warning`` the sender gets one delay warning;
* permanent refusals (5xx, no such domain, a null MX, an operator's bounce) → a DSN to the
  sender (not for a null sender), sent before the message is acked.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from mailcore import address as addr
from mailcore import metrics
from mailcore.bus import names, outbound_state
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.outbound_state import QueueState
from mailcore.bus.outcome import Deferred, Delivered, DeliveryError, Failed, Outcome, backoff
from mailcore.bus.schemas import MailMessage
from mailcore.directory import DirectoryView
from mailcore.logging import get_logger
from services.filter.relay.dsn import RecipientStatus
from services.filter.relay.notify import Notifier
from services.filter.relay.routes import Router
from services.filter.relay.signing import Signer
from services.filter.relay.transaction import Envelope, Results, Transactor

log = get_logger("relay")

NOTIFY_RETRY = 30.0  # seconds before retrying when the bus refused a DSN
RETURNED = "returned by the postmaster"  # `mailctl queue bounce`


@dataclass(slots=True)
class Policy:
    schedule: list[float] = field(default_factory=lambda: [60.0, 300.0, 900.0])
    max_age: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0
    destination_concurrency: int = 8


def _bounce_reason(err: DeliveryError) -> str:
    if err.enhanced == "4.4.7":
        return "expired"
    if err.enhanced.startswith("5.1.2") or err.enhanced == "5.1.10":
        return "no_domain"
    if err.message == RETURNED:
        return "operator"
    return "rejected"


class Dispatcher:
    def __init__(
        self,
        *,
        js: JetStreamContext,
        bodies: ObjectStore,
        state_kv: KeyValue,
        directory: DirectoryView,
        router: Router,
        transactor: Transactor,
        notifier: Notifier,
        signer: Signer | None,
        policy: Policy,
    ) -> None:
        self.js = js
        self.bodies = bodies
        self.kv = state_kv
        self.directory = directory
        self.router = router
        self.transactor = transactor
        self.notifier = notifier
        self.signer = signer
        self.policy = policy
        self._limits: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(policy.destination_concurrency)
        )

    async def attempt(
        self, mail: MailMessage, body: bytes, state: QueueState, *, delivery: int = 1, seq: int = 0
    ) -> Outcome:
        """One attempt; ``delivery`` is JetStream's count of deliveries of stream copy
        ``seq``. More deliveries than recorded attempts mean an attempt was cut short.
        Raises :class:`~mailcore.bus.outbound_state.StateChanged` before sending anything
        when the record changed since it was read."""
        previous = state.last_delivery if state.seq == seq else 0
        if state.inflight or delivery - 1 > previous:
            # A relay died (or was stopped) mid-transaction: the remote side may have the
            # mail already, and it may arrive twice (RFC 5321 §6.1).
            metrics.RELAY_INTERRUPTED.inc(max(len(state.inflight), 1))
            log.warning(
                "attempt interrupted earlier: possible duplicate (RFC 5321 §6.1)",
                id=mail.id,
                destinations=state.inflight or "unknown",
                delivery=delivery,
            )
            state.inflight = []
        retrying = state.attempts > 0
        state.attempts += 1
        state.seq, state.last_delivery = seq, delivery
        now = time.time()
        new_bounces: list[RecipientStatus] = []
        pending = state.pending()
        if state.bounce_requested:
            returned = DeliveryError(554, RETURNED, enhanced="5.0.0")
            new_bounces = [RecipientStatus(r, returned) for r in pending]
            pending = []
        pending = await self._keep_local(mail, body, state, pending)
        by_domain: dict[str, list[str]] = defaultdict(list)
        for rcpt in pending:
            by_domain[rcpt.rpartition("@")[2].lower()].append(rcpt)
        temporary: dict[str, DeliveryError] = {}
        if by_domain:
            signed = await self.signer.sign(body) if self.signer is not None else body
            if retrying:  # `mailctl queue retry` leaves a message in this state alone
                state.inflight = sorted(by_domain)
                # Only if the record is as read: an operator's retry or bounce that took
                # the message over a moment ago wins (StateChanged), and its new copy is
                # delivered instead of this one (never both).
                await outbound_state.claim(self.kv, state)
            if len(by_domain) == 1:  # the usual case: no task of its own
                ((domain, rcpts),) = by_domain.items()
                answers = [await self._domain(domain, mail.mail_from, rcpts, signed)]
            else:
                answers = await asyncio.gather(
                    *(
                        self._domain(d, mail.mail_from, rcpts, signed)
                        for d, rcpts in by_domain.items()
                    )
                )
            state.inflight = []
            for results in answers:
                for rcpt, answer in results.items():
                    if answer is None:
                        state.done.append(rcpt)
                        state.deferred.pop(rcpt, None)
                        metrics.RELAY_DELIVERIES.labels("delivered").inc()
                        state.last_answer = "250 accepted"
                    elif answer.temporary:
                        temporary[rcpt] = answer
                        state.deferred[rcpt] = answer.reply
                        state.last_answer = answer.reply
                    else:
                        new_bounces.append(RecipientStatus(rcpt, answer))
                        state.last_answer = answer.reply
        age = now - mail.received_at
        if temporary and age >= self.policy.max_age:
            for rcpt, err in temporary.items():
                expired = DeliveryError(
                    err.code,
                    f"delivery time expired after {age / 3600:.1f} h; last answer: {err.reply}",
                    enhanced="4.4.7",
                    temporary=False,
                    remote=err.remote,
                )
                new_bounces.append(RecipientStatus(rcpt, expired))
            temporary = {}
        if new_bounces and not await self._bounce(mail, body, state, new_bounces):
            return Deferred.after("DSN not queued", NOTIFY_RETRY)
        if temporary:
            return await self._defer(mail, body, state, temporary, age)
        if state.bounced:
            return Failed("bounced: " + "; ".join(sorted(set(state.bounced.values())))[:300])
        return Delivered()

    async def _defer(
        self,
        mail: MailMessage,
        body: bytes,
        state: QueueState,
        temporary: dict[str, DeliveryError],
        age: float,
    ) -> Outcome:
        metrics.RELAY_DELIVERIES.labels("deferred").inc(len(temporary))
        delay = backoff(self.policy.schedule, state.attempts)
        state.next_attempt = time.time() + delay
        if age >= self.policy.delay_warning and not state.warned:
            statuses = [RecipientStatus(r, e) for r, e in temporary.items()]
            try:
                await self.notifier.notify(
                    mail,
                    body,
                    statuses,
                    action="delayed",
                    tag="delayed",
                    expires_at=mail.received_at + self.policy.max_age,
                )
                state.warned = True
            except Exception as exc:  # a warning is worth a retry, not a lost message
                log.warning("delay warning not queued", id=mail.id, error=str(exc))
        reason = next(iter(temporary.values())).reply
        log.info(
            "outbound mail deferred",
            id=mail.id,
            recipients=list(temporary),
            answer=reason,
            attempt=state.attempts,
            retry_in=delay,
        )
        return Deferred(reason, state.next_attempt)

    async def _bounce(
        self, mail: MailMessage, body: bytes, state: QueueState, bounces: list[RecipientStatus]
    ) -> bool:
        """DSN first, then the record: when the bus refuses the DSN, the recipients stay
        pending and the message is retried (the remote side answers the same again)."""
        try:
            await self.notifier.notify(
                mail, body, bounces, action="failed", tag=f"failed.{state.attempts}"
            )
        except Exception as exc:
            log.error("DSN not queued; retried", id=mail.id, error=f"{type(exc).__name__}: {exc}")
            return False
        for s in bounces:
            state.bounced[s.recipient] = s.error.reply
            state.deferred.pop(s.recipient, None)
            metrics.RELAY_BOUNCES.labels(_bounce_reason(s.error)).inc()
            metrics.RELAY_DELIVERIES.labels("bounced").inc()
        log.warning(
            "outbound mail bounced",
            id=mail.id,
            sender=mail.mail_from or "<>",
            recipients=[s.recipient for s in bounces],
            answer=bounces[0].error.reply,
        )
        return True

    async def _keep_local(
        self, mail: MailMessage, body: bytes, state: QueueState, pending: list[str]
    ) -> list[str]:
        """Recipients in a local domain go back to the inbound stream, never out."""
        local: list[str] = []
        remote: list[str] = []
        for rcpt in pending:
            try:
                domain = addr.split(addr.normalize(rcpt))[1]
            except addr.InvalidAddress:
                remote.append(rcpt)
                continue
            (local if self.directory.is_local_domain(domain) else remote).append(rcpt)
        if local:
            copy = MailMessage(
                id=f"{mail.id}.local",
                mail_from=mail.mail_from,
                recipients=local,
                size=len(body),
                received_at=mail.received_at,
                client=mail.client,
                scan=mail.scan,
            )
            await publish_mail(self.js, self.bodies, names.SUBJECT_INBOUND, copy, body)
            state.done.extend(local)
            metrics.RELAY_DELIVERIES.labels("local").inc(len(local))
            log.info("local recipients kept inside", id=mail.id, recipients=local)
        return remote

    async def _domain(self, domain: str, sender: str, rcpts: list[str], body: bytes) -> Results:
        try:
            route = await self.router.route(domain)
        except DeliveryError as exc:
            return dict.fromkeys(rcpts, exc)
        async with self._limits[route.key]:
            return await self.transactor.send(route, Envelope(sender, rcpts, body))
