"""Durable hand-off: the message goes to JetStream, and only its PubAck makes it ours.

Mail for local recipients goes to ``mail.inbound`` (the store delivers it), mail for
remote recipients to ``mail.outbound`` (the relay delivers it); a message for both is
published to both under one id. ``Nats-Msg-Id`` is the message id, so a publish retried
inside the duplicate window is stored once.

A PubAck that does not come in time is ambiguous: a slow or frozen nats-server may store
the message when it wakes. Answering 451 then would make the sender send it again under a
new id — a duplicate. So the publish is retried with the same ``Nats-Msg-Id`` for up to
``patience`` seconds (well inside the sender's 10 minutes for the reply to DATA, RFC 5321
§4.5.3.2, and inside the stream's duplicate window), and the message is accepted as soon
as one attempt is acknowledged (a PubAck marked duplicate included).

Bodies above ``inline_body_max`` travel through the Object Store (claim check). Any
failure is a :class:`BusUnavailable` (451) or, when the stream is at its byte budget,
:class:`StorageFull` (452); never a 5xx.

:class:`FillGate` keeps a cached view of how full the inbound stream is, refreshed in the
background, so the 452 gate costs nothing per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError
from nats.js.object_store import ObjectStore

from mailcore import metrics
from mailcore.bus import names
from mailcore.bus.claimcheck import body_object_name, publish_mail
from mailcore.bus.probe import can_store
from mailcore.bus.schemas import MailMessage
from mailcore.bus.setup import inbound_fill
from mailcore.logging import get_logger
from services.filter import errors
from services.filter.delivered import DeliveredWaiter

log = get_logger("filter.handoff")

FILL_REFRESH = 2.0  # seconds between looks at the inbound stream's fill level
RETRY_MIN = 1.0  # an attempt needs at least this long before the patience runs out
RETRY_PAUSE = 0.5  # after a connection error, before the next attempt


def _is_full(exc: APIError) -> bool:
    text = f"{exc.description or ''}".lower()
    return "maximum bytes" in text or "maximum messages" in text or "insufficient" in text


class FillGate:
    """Whether the inbound stream is at or above its high-water mark (cached), and whether
    JetStream can store at all (:attr:`bus_available`, a probe write each refresh: a
    JetStream switched off by a full disk keeps the connection up but stores nothing)."""

    def __init__(
        self, js: JetStreamContext, high_water: float, interval: float = FILL_REFRESH
    ) -> None:
        self.js = js
        self.high_water = high_water
        self.interval = interval
        self.fill = 0.0
        self.bus_available = True
        self._full_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def full(self) -> bool:
        return self.fill >= self.high_water or time.monotonic() < self._full_until

    def note_full(self) -> None:
        """The stream refused a message for size: say full until the next refresh."""
        self._full_until = time.monotonic() + self.interval

    async def refresh(self) -> None:
        available = await can_store(self.js, timeout=max(1.0, self.interval))
        if available != self.bus_available:
            if available:
                log.info("bus stores again")
            else:
                log.error("bus unavailable: JetStream stores nothing (disk full?)")
        self.bus_available = available
        try:
            async with asyncio.timeout(max(1.0, self.interval)):
                self.fill = await inbound_fill(self.js)
        except (TimeoutError, NatsError) as exc:
            log.debug("inbound fill unknown", error=type(exc).__name__)

    async def start(self) -> None:
        await self.refresh()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="inbound-fill")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
                return
            await self.refresh()

    async def stop(self) -> None:
        # An event, not only cancel(): on Python 3.11 a cancel that meets a finished request
        # inside wait_for() can be lost, and the loop would go on for ever.
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await asyncio.wait({task}, timeout=self.interval + 5)
            task.cancel()


class Handoff:
    def __init__(
        self,
        js: JetStreamContext,
        bodies: ObjectStore,
        gate: FillGate,
        *,
        inline_max: int,
        timeout: float,
        patience: float = 0.0,
        delivered: DeliveredWaiter | None = None,
    ) -> None:
        self.delivered = delivered  # synchronous mirroring: 250 once both stores have it
        self.js = js
        self.patience = patience
        self.bodies = bodies
        self.gate = gate
        self.inline_max = inline_max
        self.timeout = timeout

    def _deadline(self, size: int) -> float:
        # The Object Store takes a large body in 128 KiB chunks, each acknowledged: allow
        # time for the size on top of the hand-off timeout (1 s per 4 MiB is generous).
        if size <= self.inline_max:
            return self.timeout
        return self.timeout + size / (4 * 1024 * 1024)

    async def publish(
        self, msg: MailMessage, body: bytes, *, local: list[str], remote: list[str]
    ) -> None:
        """Publish to inbound and/or outbound and wait for every PubAck."""
        targets: list[tuple[str, MailMessage]] = []
        if local and remote:  # two frames: publish_mail fills in each one's body fields
            targets.append((names.SUBJECT_INBOUND, replace(msg, recipients=list(local))))
            targets.append((names.SUBJECT_OUTBOUND, replace(msg, recipients=list(remote))))
        else:
            msg.recipients = list(local or remote)
            targets.append((names.SUBJECT_INBOUND if local else names.SUBJECT_OUTBOUND, msg))
        started = time.perf_counter()
        waiter = self.delivered if local else None
        word = waiter.expect(msg.id) if waiter is not None else None
        try:
            await self._publish(msg, body, targets, started)
        except BaseException:
            if waiter is not None:
                waiter.forget(msg.id)
            raise
        if waiter is not None and word is not None:
            await waiter.wait(msg.id, word)

    async def _publish(
        self, msg: MailMessage, body: bytes, targets: list[tuple[str, MailMessage]], started: float
    ) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + max(self.patience, self._deadline(len(body)))
        attempt = 0
        while True:
            attempt += 1
            left = give_up - loop.time()
            try:
                async with asyncio.timeout(min(self._deadline(len(body)), max(left, 0.1))):
                    if len(targets) == 1:
                        await self._one(*targets[0], body)
                    else:
                        await asyncio.gather(*(self._one(s, m, body) for s, m in targets))
                break
            except (TimeoutError, ConnectionError) as exc:
                # ambiguous: the bus may have stored it. Again, same Nats-Msg-Id.
                if give_up - loop.time() < RETRY_MIN:
                    await self._forget_bodies(msg, targets, body)
                    raise errors.BusUnavailable(
                        f"no PubAck after {attempt} attempts ({type(exc).__name__})"
                    ) from None
                log.warning("no PubAck; publishing again with the same id", id=msg.id)
                metrics.HANDOFF_RETRIES.inc()
                if isinstance(exc, ConnectionError):
                    await asyncio.sleep(RETRY_PAUSE)
            except APIError as exc:
                await self._forget_bodies(msg, targets, body)
                if _is_full(exc):
                    self.gate.note_full()
                    raise errors.StorageFull(exc.description or "stream full") from None
                self.gate.bus_available = False  # until the next probe says otherwise
                raise errors.BusUnavailable(f"JetStream refused: {exc.description}") from None
            except NatsError as exc:
                # not sent, or refused at once (no JetStream responders): not stored
                self.gate.bus_available = False  # until the next probe says otherwise
                await self._forget_bodies(msg, targets, body)
                raise errors.BusUnavailable(type(exc).__name__) from None
        if attempt > 1:
            log.info("stored after a retry", id=msg.id, attempts=attempt)
        metrics.HANDOFF_SECONDS.observe(time.perf_counter() - started)

    async def _one(self, subject: str, msg: MailMessage, body: bytes) -> None:
        await publish_mail(
            self.js,
            self.bodies,
            subject,
            msg,
            body,
            inline_max=self.inline_max,
            timeout=self.timeout,
            write_only=True,  # the filter's NATS user may not read bodies (docs/security.md)
        )

    async def _forget_bodies(
        self, msg: MailMessage, targets: list[tuple[str, MailMessage]], body: bytes
    ) -> None:
        """Best effort: a failed hand-off leaves no claim-checked body behind."""
        if len(body) <= self.inline_max:
            return
        for subject, _ in targets:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.bodies.delete(body_object_name(msg, subject))
