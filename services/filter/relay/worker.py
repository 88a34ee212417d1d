"""The relay's consumer: every relay process binds the one durable ``relay`` consumer of
``MAIL_OUTBOUND``, so a message goes to one relay at a time; while it works on it the
relay tells JetStream it is alive (``in_progress`` every third of the ack wait), so the
message is not handed to another relay mid-transaction. A relay that dies leaves it
unacked: after the ack wait another relay (or the restarted one) takes it, reads the
queue state and sends only to the recipients whose answer is not yet recorded.

Settlement is :class:`mailcore.bus.settlement.QueueSettler`'s, from the typed outcome of
:class:`~services.filter.relay.attempt.Dispatcher`: delivered or bounced → ack (and the
queue state forgotten), deferred → nak with the delay of the retry schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from mailcore.bus import deadletter, names, outbound_state
from mailcore.bus.claimcheck import BodyMissing, load_body
from mailcore.bus.connect import Bus
from mailcore.bus.outbound_state import QueueState
from mailcore.bus.outcome import Deferred
from mailcore.bus.schemas import SchemaError, decode_mail
from mailcore.bus.settlement import QueueSettler, delivery_attempt, stream_seq
from mailcore.logging import get_logger
from services.filter.relay.attempt import Dispatcher

log = get_logger("relay")

RETRY_DELAY = 30.0  # a failure of the relay itself (bus, state): retried after this
FETCH_MAX = 64


class Heartbeat:
    """Resets the ack wait of ``msg`` every ``interval`` seconds while it is worked on (a
    slow remote MX): a timer, and a task only when it fires, since most messages are done
    long before the first beat."""

    def __init__(self, msg: Any, interval: float) -> None:
        self.msg = msg
        self.interval = interval
        self.beats = 0
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(interval, self._fire)
        self._task: asyncio.Task[None] | None = None

    def _fire(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._beat(), name="relay-heartbeat")
        self._timer = self._loop.call_later(self.interval, self._fire)

    async def _beat(self) -> None:
        with contextlib.suppress(Exception):
            await self.msg.in_progress()
            self.beats += 1

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()


class RelayWorker:
    def __init__(
        self,
        bus: Bus,
        dispatcher: Dispatcher,
        settler: QueueSettler,
        state_kv: KeyValue,
        *,
        concurrency: int = 64,
        fetch_timeout: float = 1.0,
    ) -> None:
        self.bus = bus
        self.dispatcher = dispatcher
        self.settler = settler
        self.kv = state_kv
        self.concurrency = concurrency
        self.fetch_timeout = fetch_timeout
        self.running = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._free = concurrency  # messages that may be fetched now (concurrency - taken)
        self._room = asyncio.Event()  # set when a message is finished
        self._ack_wait = 60.0
        self._bodies: ObjectStore | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        js = self.bus.js
        while True:
            try:
                sub = await js.pull_subscribe_bind(
                    durable=names.CONSUMER_RELAY, stream=names.STREAM_OUTBOUND
                )
                info = await js.consumer_info(names.STREAM_OUTBOUND, names.CONSUMER_RELAY)
                bodies = await js.object_store(names.OBJ_BODIES)
                break
            except Exception as exc:
                log.warning("relay consumer not ready", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 2.0)
                if stopping.is_set():
                    return
        self._ack_wait = float(info.config.ack_wait or 60.0)
        self.settler.attach(bodies, ack_wait=self._ack_wait, backoff=[])
        self._bodies = bodies
        self.running = True
        log.info("relay started", concurrency=self.concurrency)
        try:
            while not stopping.is_set():
                if self._free == 0:  # fetch only what there is room for; look at `stopping`
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), 1.0)
                    continue
                want = min(self._free, FETCH_MAX)
                self._free -= want
                try:
                    msgs = await sub.fetch(want, timeout=self.fetch_timeout)
                except (TimeoutError, NatsTimeout):
                    msgs = []
                except Exception as exc:
                    msgs = []
                    if not stopping.is_set():
                        log.warning("fetch failed", error=f"{type(exc).__name__}: {exc}")
                        await asyncio.sleep(1.0)
                self._free += want - len(msgs)
                for msg in msgs:
                    task = asyncio.create_task(self._guarded(msg), name="relay-message")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            self.running = False
            await self.drain(10.0)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def drain(self, seconds: float) -> None:
        """Let messages in progress finish for ``seconds``, then cancel the rest (their
        transactions count as interrupted when the mail comes round again)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _guarded(self, msg: Any) -> None:
        beat = Heartbeat(msg, max(self._ack_wait / 3, 0.2))
        try:
            await self.handle(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbound message not handled; retried later")
            with contextlib.suppress(Exception):
                await self.settler.nak(msg, RETRY_DELAY)
        finally:
            beat.stop()
            self._free += 1
            self._room.set()

    async def handle(self, msg: Any) -> None:
        try:
            mail = decode_mail(msg.data)
        except SchemaError as exc:
            await self.settler.terminate(
                msg, "schema", str(exc), dead_reason=deadletter.REASON_POISON
            )
            return
        assert self._bodies is not None, "handle() before run() bound the consumer"
        try:
            body = await load_body(self._bodies, mail)
        except BodyMissing as exc:
            await self.settler.terminate(
                msg, "body_missing", str(exc), mail=mail, dead_reason=deadletter.REASON_BODY_MISSING
            )
            return
        n = delivery_attempt(msg)
        # A first delivery has no record, unless mailctl published it again.
        known = n > 1 or bool((msg.headers or {}).get(names.HDR_RELAY_STATE))
        state = await outbound_state.load(self.kv, mail.id) if known else None
        if state is None:
            state = QueueState(
                id=mail.id,
                sender=mail.mail_from,
                recipients=list(mail.recipients),
                received_at=mail.received_at,
            )
        try:
            outcome = await self.dispatcher.attempt(
                mail, body, state, delivery=n, seq=stream_seq(msg) or 0
            )
        except outbound_state.StateChanged:
            # `mailctl queue retry|bounce` took the message over (it publishes a new copy
            # and deletes this one): nothing was sent; if this copy is still there, it
            # comes back with the record as it is now.
            log.info("queue record changed meanwhile; this copy left alone", id=mail.id)
            await self.settler.nak(msg, RETRY_DELAY)
            return
        if isinstance(outcome, Deferred):
            await outbound_state.save(self.kv, state)
            await self.settler.apply(msg, mail, outcome)
            return
        # Finished: ack, then forget the record. A crash before the ack redelivers the
        # message, and the redelivery finds it interrupted (see the dispatcher).
        await self.settler.apply(msg, mail, outcome)
        if known:
            with contextlib.suppress(Exception):
                await outbound_state.forget(self.kv, mail.id)
