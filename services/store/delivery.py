"""Delivery: the durable pull consumer that moves accepted mail from the inbound stream
into the mail store.

For each batch: decode every bus message, load claim-checked bodies, resolve each
recipient with the watched directory, commit every local recipient's copy in one group
commit (one transaction per account), and only then ack (architecture invariant 2).
Redelivery is harmless: the store recognises (message id, account) delivery keys.

What then becomes of each bus message (ack, nak with a delay, requeue, dead letter,
termination of poison, forwarding to remote alias targets) is up to the consumer's
:class:`~services.store.settlement.Settler`. The consumer itself reads the directory
afresh from NATS when the watched copy does not resolve a recipient (it may lag the
filter's), and it stops fetching while the store's file system is below its free-space
threshold or the settler reports a full disk, until the space is back above the resume
mark (:mod:`services.store.diskspace`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.object_store import ObjectStore

from mailcore import faults, metrics
from mailcore.bus import deadletter, names
from mailcore.bus.claimcheck import BodyMissing, load_body
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, SchemaError, decode_mail
from mailcore.directory import Directory, Resolution
from mailcore.logging import get_logger
from mailcore.mailstore import Delivery, DeliveryResult, MailStore, Quota
from services.store import settlement
from services.store.diskspace import SpaceGuard
from services.store.duplicates import RecentDeliveries, fingerprint
from services.store.mirror_sync import MirrorSync
from services.store.settlement import Item, Settler, delivery_attempt

log = get_logger("delivery")

DISK_PROBE_INTERVAL = 5.0
MIN_FREE_BYTES = 256 * 1024**2  # StoreSettings.delivery_min_free_bytes
JUNK_FLAGS = frozenset(("$Junk",))


def delivery_key(mail: MailMessage, account_id: str) -> str:
    return f"{mail.id}/{account_id}"


def stamp(mail: MailMessage, address: str, body: bytes) -> bytes:
    """RFC 5321 §4.4: the final delivery adds Return-Path; Delivered-To names the mailbox."""
    return (
        b"Return-Path: <" + mail.mail_from.encode("utf-8", "replace") + b">\r\n"
        b"Delivered-To: " + address.encode("utf-8", "replace") + b"\r\n" + body
    )


class DeliveryConsumer:
    def __init__(
        self,
        bus: Bus,
        directory: Directory,
        store: MailStore,
        *,
        batch: int = 256,
        max_deliver: int = 20,
        fetch_timeout: float = 1.0,
        retry_delay: float = settlement.RETRY_DELAY,
        quota_retry: float = settlement.QUOTA_RETRY,
        unknown_retry: float = settlement.UNKNOWN_RETRY,
        unknown_attempts: int = settlement.UNKNOWN_ATTEMPTS,
        max_requeues: int = settlement.MAX_REQUEUES,
        min_free: int = MIN_FREE_BYTES,
        mirror_sync: MirrorSync | None = None,
    ) -> None:
        self.mirror_sync = mirror_sync
        self.bus = bus
        self.directory = directory
        self.store = store
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.settler = Settler(
            bus,
            pause=self._pause,
            max_deliver=max_deliver,
            retry_delay=retry_delay,
            quota_retry=quota_retry,
            unknown_retry=unknown_retry,
            unknown_attempts=unknown_attempts,
            max_requeues=max_requeues,
        )
        self.probe_interval = DISK_PROBE_INTERVAL
        self.space = SpaceGuard(store.root, min_free)
        self.recent = RecentDeliveries()
        # fingerprints of the bus messages being delivered now: id -> fp and fp -> id
        self._fingerprints: dict[str, bytes] = {}
        self._pending: dict[bytes, str] = {}
        self.disk_full = False
        self.running = False
        self._bodies: ObjectStore | None = None
        self._fresh: Directory | None = None
        self._fresh_at = -1e9

    def _disk_is_full(self) -> bool:
        return self.disk_full

    @property
    def healthy(self) -> bool:
        return self.running and self.storage_ok()

    def storage_ok(self) -> bool:
        """For ``/healthz``: delivery is not paused and the disk is above the threshold now."""
        return not self.disk_full and not self.space.low()

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set; every failure is contained and logged."""
        js = self.bus.js
        while True:
            try:
                sub = await js.pull_subscribe_bind(
                    durable=names.CONSUMER_DELIVERY, stream=names.STREAM_INBOUND
                )
                self._bodies = await js.object_store(names.OBJ_BODIES)
                info = await js.consumer_info(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
                break
            except Exception as exc:
                log.warning("delivery consumer not ready", error=f"{type(exc).__name__}: {exc}")
                await _sleep(stopping, 2.0)
                if stopping.is_set():
                    return
        self.settler.attach(
            self._bodies,
            ack_wait=float(info.config.ack_wait or 0.0),
            backoff=[float(b) for b in info.config.backoff or []],
        )
        self.running = True
        log.info("delivery consumer started", batch=self.batch)
        # One batch commits (its fsyncs run off the loop) while the next is fetched and
        # prepared; a batch is acked only after its own commit.
        inflight: asyncio.Task[None] | None = None
        try:
            while not stopping.is_set():
                if not self.disk_full and self.space.low():
                    self._pause()
                if self.disk_full:
                    await _finish(inflight)
                    inflight = None
                    await self._wait_for_space(stopping)
                    continue
                try:
                    msgs = await sub.fetch(self.batch, timeout=self.fetch_timeout)
                except (TimeoutError, NatsTimeout):
                    continue
                except Exception as exc:
                    if stopping.is_set():
                        break
                    log.warning("fetch failed", error=f"{type(exc).__name__}: {exc}")
                    await _sleep(stopping, 1.0)
                    continue
                items = await self.prepare(msgs)
                await _finish(inflight)
                inflight = None
                if self._disk_is_full():  # the previous batch found the disk full: wait first
                    for item in items:
                        await self.settler.nak(item.msg, self.settler.retry_delay)
                    continue
                inflight = asyncio.create_task(self.commit(items), name="delivery-commit")
        finally:
            await _finish(inflight)
            self.running = False
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # --- one batch ---------------------------------------------------------------------
    async def handle(self, msgs: list[Any]) -> None:
        await self.commit(await self.prepare(msgs))

    async def prepare(self, msgs: list[Any]) -> list[Item]:
        items: list[Item] = []
        for msg in msgs:
            try:
                item = await self._prepare(msg)
            except Exception:
                log.exception("bus message not prepared; retried later")
                with contextlib.suppress(Exception):
                    await self.settler.retry_later(msg, None)
                continue
            if item is not None:
                items.append(item)
        return items

    async def commit(self, items: list[Item]) -> None:
        """Commit every copy of the batch, then settle each bus message (ack, nak, term)."""
        if not items:
            return
        try:
            copies = [c for item in items for c in item.copies]
            started = time.perf_counter()
            faults.crash_point("store.before_commit")
            results = await self.store.deliver(copies) if copies else []
            faults.crash_point("store.after_commit")
            metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)
            metrics.DELIVERY_BATCH.observe(len(items))
        except Exception:
            log.exception("delivery batch failed")
            results = None
        by_key: dict[str, DeliveryResult] = {r.key: r for r in results or []}
        if self.mirror_sync is not None and results:
            try:
                await self._wait_for_peer(results, copies)
            except Exception:  # committed here: acked all the same (asynchronously)
                log.exception("synchronous mirror wait failed")
        settled: list[str] = []
        for item in items:
            try:
                if results is None:
                    self._forget(item.mail.id)
                    await self.settler.retry_later(item.msg, item.mail)
                else:
                    done = [by_key[c.key] for c in item.copies]
                    await self.settler.settle(item, done)
                    settled.append(item.mail.id)
                    fp = self._forget(item.mail.id)
                    if done and all(r.outcome in ("delivered", "duplicate") for r in done):
                        self.recent.remember(fp, item.mail.id)
            except Exception:
                # Not settled: retried (a requeue on its last attempt, which a bare
                # redelivery after the ack wait would not give), else left to JetStream.
                log.exception("bus message not settled", id=item.mail.id)
                with contextlib.suppress(Exception):
                    await self.settler.retry_later(item.msg, item.mail)
        faults.crash_point("store.after_ack")
        if self.mirror_sync is not None and settled:
            await self._tell_delivered(settled)

    async def _tell_delivered(self, ids: list[str]) -> None:
        """Synchronous mirroring: a filter waiting to answer 250 learns that the mail is
        here and (or the wait timed out, mirror_sync.py) on the peer."""
        with contextlib.suppress(Exception):  # the filter's wait ends at its timeout
            await self.bus.nc.publish(names.SUBJECT_DELIVERED, json.dumps({"ids": ids}).encode())

    async def _wait_for_peer(self, results: list[DeliveryResult], copies: list[Any]) -> None:
        """Synchronous mirroring: the peer commits the batch before it is acked (or the
        wait times out and the acks go out anyway: mirror_sync.py)."""
        assert self.mirror_sync is not None
        accounts = {
            c.account_id for c, r in zip(copies, results, strict=True) if r.outcome == "delivered"
        }
        accts = [await self.store.account(a) for a in sorted(accounts)]
        await asyncio.gather(*(self.mirror_sync.wait(a) for a in accts))

    async def _prepare(self, msg: Any) -> Item | None:
        try:
            mail = decode_mail(msg.data)
        except SchemaError as exc:
            await self.settler.terminate(
                msg, "schema", str(exc), dead_reason=deadletter.REASON_POISON
            )
            return None
        if mail.body_ref is not None:
            assert self._bodies is not None
            try:
                mail.body = await load_body(self._bodies, mail)
            except BodyMissing as exc:
                await self.settler.terminate(
                    msg,
                    "body_missing",
                    str(exc),
                    mail=mail,
                    dead_reason=deadletter.REASON_BODY_MISSING,
                )
                return None
            except Exception as exc:
                log.warning("body not loaded", id=mail.id, error=f"{type(exc).__name__}: {exc}")
                await self.settler.retry_later(msg, mail)
                return None
        item = Item(msg=msg, mail=mail)
        fp = fingerprint(mail)
        if self.recent.resent(fp, mail.id) or (
            fp is not None and self._pending.get(fp, mail.id) != mail.id
        ):
            # the sender's retry of a message already delivered under another bus id
            log.info("resent copy dropped", id=mail.id)
            metrics.DELIVERY_RESENT.inc()
            await self.settler.settle(item, [])  # nothing to store: acked
            return None
        if fp is not None:
            self._fingerprints[mail.id] = fp
            self._pending[fp] = mail.id
        spam = mail.scan.spam_tagged
        seen: set[str] = set()
        for rcpt in mail.recipients:
            res = await self._resolve(rcpt)
            if not res:
                item.unknown.append(rcpt)
                log.warning(
                    "recipient not in the directory; retried later",
                    id=mail.id,
                    rcpt=rcpt,
                    attempt=delivery_attempt(msg),
                )
            for remote in res.remote:
                if remote not in item.remote:
                    item.remote.append(remote)
            for user in res.local:
                if user.account_id in seen:
                    continue  # one copy per mailbox, however many addresses reach it
                seen.add(user.account_id)
                item.addresses[user.account_id] = user.address
                item.copies.append(
                    Delivery(
                        key=delivery_key(mail, user.account_id),
                        account_id=user.account_id,
                        mailbox_role="junk" if spam else "inbox",
                        data=stamp(mail, user.address, mail.body),
                        internal_date=mail.received_at,
                        flags=JUNK_FLAGS if spam else frozenset(),
                        quota=Quota(user.quota_bytes, user.quota_messages),
                    )
                )
        return item

    def _forget(self, bus_id: str) -> bytes | None:
        fp = self._fingerprints.pop(bus_id, None)
        if fp is not None and self._pending.get(fp) == bus_id:
            del self._pending[fp]
        return fp

    async def _resolve(self, rcpt: str) -> Resolution:
        """The watched directory's answer; when it has none, NATS is asked afresh: the
        filter resolved this address before its 250, and the store's watch may lag."""
        res = self.directory.resolve(rcpt)
        if res:
            return res
        fresh = await self._fresh_directory()
        if fresh is None:
            return res
        res = fresh.resolve(rcpt)
        if res:
            log.info("recipient found by a fresh directory read (watch behind)", rcpt=rcpt)
        return res

    async def _fresh_directory(self) -> Directory | None:
        """A directory read from NATS now; one read serves every look-up for a moment
        (well under ``unknown_retry``, so a retry always reads afresh)."""
        now = time.monotonic()
        if now - self._fresh_at < min(1.0, self.settler.unknown_retry / 2):
            return self._fresh  # None after a failed read: not retried at once either
        try:
            self._fresh = await asyncio.wait_for(Directory.open(self.bus.js, watch=False), 30)
        except Exception as exc:
            self._fresh = None
            log.warning("directory not re-read", error=f"{type(exc).__name__}: {exc}")
        self._fresh_at = time.monotonic()  # from the end: a big directory takes a while
        return self._fresh

    # --- disk full -----------------------------------------------------------------------
    def _pause(self) -> None:
        """A copy failed for want of disk space: stop fetching until there is room."""
        if not self.disk_full:
            log.error(
                "disk full: delivery paused",
                store=str(self.store.root),
                free_bytes=self.space.free(),
                min_free_bytes=self.space.min_free,
            )
        self.disk_full = True
        metrics.DELIVERY_PAUSED.set(1)

    async def _wait_for_space(self, stopping: asyncio.Event) -> None:
        await _sleep(stopping, self.probe_interval)
        if stopping.is_set():
            return
        if await asyncio.to_thread(self.space.room_again):
            log.info("disk has room again: delivery resumed", free_bytes=self.space.free())
            self.disk_full = False
            metrics.DELIVERY_PAUSED.set(0)


async def _finish(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        with contextlib.suppress(Exception):
            await task


async def _sleep(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
