"""Delivery: the durable pull consumer that moves accepted mail from the inbound stream
into the mail store.

For each batch: decode every bus message, load claim-checked bodies, resolve each
recipient with the watched directory, commit every local recipient's copy in one group
commit (one transaction per account), and only then ack (architecture invariant 2).
Redelivery is harmless: the store recognises (message id, account) delivery keys.

A 250 is a promise: nothing accepted disappears. What the store cannot deliver goes to
the dead-letter stream (:mod:`mailcore.bus.deadletter`) with the original frame, and a
message is acked only once every recipient is either committed or dead-lettered.

Outcomes per bus message:

* poison (unknown schema version, undecodable, body object missing): dead-lettered
  (reason ``poison``/``body_missing``) and terminated, counted in
  ``postern_delivery_terminated_total{reason}`` and logged; the consumer goes on;
* a recipient the directory does not resolve: the directory is read afresh from NATS
  (the store's watched copy may lag the filter's), then the message is nacked and retried
  every ``unknown_retry`` seconds; after ``unknown_attempts`` attempts the mail for that
  recipient is dead-lettered (``unknown_recipient``). Resolved recipients are delivered
  at once (redelivery is idempotent);
* disk full: nak with a delay and stop fetching until a probe write succeeds;
* other transient failure: nak with a delay; when the consumer's attempts run out the
  frame is published again (fresh attempts, ``Postern-Requeues`` counts it) and the old
  copy dropped, so it is never stuck; after ``max_requeues`` requeues it is dead-lettered
  (``failed``). A full disk does not count as a requeue: delivery pauses instead;
* over quota: a temporary failure, like Postfix deferring on Dovecot's "mailbox full":
  retried every ``QUOTA_RETRY`` seconds while attempts remain (so freeing space or
  raising the quota lets it in); on the consumer's last attempt it is dead-lettered
  (``quota``) and logged at error level — the relay issue turns that into a bounce.

When the bus refuses a dead letter (the dead stream is full; :mod:`services.store.dead`),
the message stays on the inbound stream (nak, or a requeue on its last attempt): nothing
is acked that is not stored somewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.object_store import ObjectStore

from mailcore import metrics
from mailcore.bus import deadletter, names
from mailcore.bus.claimcheck import BodyMissing, drop_body, load_body, publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, SchemaError, decode_mail
from mailcore.directory import Directory, Resolution
from mailcore.logging import get_logger
from mailcore.mailstore import Delivery, DeliveryResult, MailStore, Quota
from mailcore.mailstore.engine import STORAGE_FULL
from services.store import dead

log = get_logger("delivery")

RETRY_DELAY = 30.0  # seconds before a transient failure is retried
QUOTA_RETRY = 900.0  # seconds between attempts for a full mailbox
UNKNOWN_RETRY = 60.0  # seconds between attempts for a recipient the directory lacks
UNKNOWN_ATTEMPTS = 5
MAX_REQUEUES = 5
DISK_PROBE_INTERVAL = 5.0
DISK_PROBE_BYTES = 1024 * 1024
JUNK_FLAGS = frozenset(("$Junk",))


@dataclass(slots=True)
class _Item:
    """One bus message of a batch and the recipient copies it became."""

    msg: Any  # nats.aio.msg.Msg
    mail: MailMessage
    copies: list[Delivery] = field(default_factory=list)
    # account id -> the user's address (what a dead letter for that mailbox names)
    addresses: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)  # recipients that did not resolve
    remote: list[str] = field(default_factory=list)  # remote alias targets to forward


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
        retry_delay: float = RETRY_DELAY,
        quota_retry: float = QUOTA_RETRY,
        unknown_retry: float = UNKNOWN_RETRY,
        unknown_attempts: int = UNKNOWN_ATTEMPTS,
        max_requeues: int = MAX_REQUEUES,
    ) -> None:
        self.bus = bus
        self.directory = directory
        self.store = store
        self.batch = batch
        self.max_deliver = max_deliver
        self.fetch_timeout = fetch_timeout
        self.retry_delay = retry_delay
        self.quota_retry = quota_retry
        self.unknown_retry = unknown_retry
        self.unknown_attempts = unknown_attempts
        self.max_requeues = max_requeues
        self.probe_interval = DISK_PROBE_INTERVAL
        self._ack_wait = 0.0
        self._backoff: list[float] = []
        self.disk_full = False
        self.running = False
        self._bodies: ObjectStore | None = None
        self._fresh: Directory | None = None
        self._fresh_at = -1e9

    def _disk_is_full(self) -> bool:
        return self.disk_full

    @property
    def healthy(self) -> bool:
        return self.running and not self.disk_full

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
        self._ack_wait = float(info.config.ack_wait or 0.0)
        self._backoff = [float(b) for b in info.config.backoff or []]
        self.running = True
        log.info("delivery consumer started", batch=self.batch)
        # One batch commits (its fsyncs run off the loop) while the next is fetched and
        # prepared; a batch is acked only after its own commit.
        inflight: asyncio.Task[None] | None = None
        try:
            while not stopping.is_set():
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
                        await self._nak(item.msg, self.retry_delay)
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

    async def prepare(self, msgs: list[Any]) -> list[_Item]:
        items: list[_Item] = []
        for msg in msgs:
            try:
                item = await self._prepare(msg)
            except Exception:
                log.exception("bus message not prepared; retried later")
                with contextlib.suppress(Exception):
                    await self._retry_later(msg, None)
                continue
            if item is not None:
                items.append(item)
        return items

    async def commit(self, items: list[_Item]) -> None:
        """Commit every copy of the batch, then settle each bus message (ack, nak, term)."""
        if not items:
            return
        try:
            copies = [c for item in items for c in item.copies]
            started = time.perf_counter()
            results = await self.store.deliver(copies) if copies else []
            metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)
            metrics.DELIVERY_BATCH.observe(len(items))
        except Exception:
            log.exception("delivery batch failed")
            results = None
        by_key: dict[str, DeliveryResult] = {r.key: r for r in results or []}
        for item in items:
            try:
                if results is None:
                    await self._retry_later(item.msg, item.mail)
                else:
                    await self._settle(item, [by_key[c.key] for c in item.copies])
            except Exception:
                # Not settled: retried (a requeue on its last attempt, which a bare
                # redelivery after the ack wait would not give), else left to JetStream.
                log.exception("bus message not settled", id=item.mail.id)
                with contextlib.suppress(Exception):
                    await self._retry_later(item.msg, item.mail)

    async def _prepare(self, msg: Any) -> _Item | None:
        try:
            mail = decode_mail(msg.data)
        except SchemaError as exc:
            await self._terminate(msg, "schema", str(exc), dead_reason=deadletter.REASON_POISON)
            return None
        if mail.body_ref is not None:
            assert self._bodies is not None
            try:
                mail.body = await load_body(self._bodies, mail)
            except BodyMissing as exc:
                await self._terminate(
                    msg,
                    "body_missing",
                    str(exc),
                    mail=mail,
                    dead_reason=deadletter.REASON_BODY_MISSING,
                )
                return None
            except Exception as exc:
                log.warning("body not loaded", id=mail.id, error=f"{type(exc).__name__}: {exc}")
                await self._retry_later(msg, mail)
                return None
        item = _Item(msg=msg, mail=mail)
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
                    attempt=_attempt(msg),
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
        if now - self._fresh_at < min(1.0, self.unknown_retry / 2):
            return self._fresh  # None after a failed read: not retried at once either
        try:
            self._fresh = await asyncio.wait_for(Directory.open(self.bus.js, watch=False), 30)
        except Exception as exc:
            self._fresh = None
            log.warning("directory not re-read", error=f"{type(exc).__name__}: {exc}")
        self._fresh_at = time.monotonic()  # from the end: a big directory takes a while
        return self._fresh

    async def _settle(self, item: _Item, results: list[DeliveryResult]) -> None:
        spam = item.mail.scan.spam_tagged
        for r in results:
            outcome = "junk" if r.outcome == "delivered" and spam else r.outcome
            metrics.DELIVERIES.labels(outcome).inc()
        failed = [r for r in results if r.outcome == "failed"]
        over_quota = [r for r in results if r.outcome == "quota"]
        attempt = _attempt(item.msg)
        last = attempt >= self.max_deliver
        if failed:
            disk = any(r.error == STORAGE_FULL for r in failed)
            if disk:
                if not self.disk_full:
                    log.error("disk full: delivery paused", store=str(self.store.root))
                self.disk_full = True
                metrics.DELIVERY_PAUSED.set(1)
            else:
                log.warning("delivery failed", id=item.mail.id, error=failed[0].error)
            if not last:
                await self._nak(item.msg, self.retry_delay)
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
            await self._nak(item.msg, self.quota_retry)
            return
        if item.unknown and attempt < min(self.unknown_attempts, self.max_deliver):
            await self._nak(item.msg, self.unknown_retry)
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
    def _addresses(item: _Item, results: Iterable[DeliveryResult]) -> list[str]:
        """The mailbox addresses of the copies ``results`` name (a retry goes to them
        directly, not through an alias that would reach others too)."""
        out: list[str] = []
        for r in results:
            account = r.key.rpartition("/")[2]
            address = item.addresses.get(account, account)
            if address not in out:
                out.append(address)
        return out

    async def _forward(self, item: _Item) -> bool:
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
            await self._retry_later(item.msg, mail)
            return False
        log.info("forwarded to remote alias targets", id=mail.id, to=item.remote)
        return True

    async def _dead_letter(self, item: _Item, groups: dead.Groups) -> None:
        """Dead-letter, then ack; a refused dead letter keeps the mail on the stream."""
        if not await self._forward(item):
            return
        if not await dead.dead_letter(
            self.bus.js, item.msg, item.mail, groups, _stream_seq(item.msg)
        ):
            await self._retry_later(item.msg, item.mail, count=False)
            return
        await item.msg.ack()
        _count_remote(item)

    async def _retry_later(self, msg: Any, mail: MailMessage | None, *, count: bool = True) -> None:
        """Nak; on the consumer's last attempt (a nak would never be redelivered) publish
        the frame again with fresh attempts instead."""
        if _attempt(msg) < self.max_deliver:
            await self._nak(msg, self.retry_delay)
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
            await self._nak(msg, self.retry_delay)
            return
        metrics.DELIVERY_REQUEUED.inc()
        log.warning(
            "delivery attempts exhausted; requeued", id=base, stream_seq=seq, requeues=requeues
        )
        await msg.term()

    async def _nak(self, msg: Any, delay: float) -> None:
        """Ask for redelivery after ``delay`` seconds.

        With a backoff list on the consumer, nats-server adds ``backoff[n-1] - ack_wait`` to
        a NAK's delay at the n-th delivery (measured on 2.11+); that is taken off again
        here, so the delay is the one asked for, or that extra when it is longer.
        """
        if self._backoff:
            n = min(max(_attempt(msg), 1), len(self._backoff))
            extra = max(0.0, self._backoff[n - 1] - self._ack_wait)
            delay = max(delay - extra, 0.001)
        await msg.nak(delay=delay)

    async def _terminate(
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

    # --- disk full -----------------------------------------------------------------------
    async def _wait_for_space(self, stopping: asyncio.Event) -> None:
        await _sleep(stopping, self.probe_interval)
        if stopping.is_set():
            return
        if await asyncio.to_thread(_probe_write, self.store.root):
            log.info("disk has room again: delivery resumed")
            self.disk_full = False
            metrics.DELIVERY_PAUSED.set(0)


def _probe_write(root: Path) -> bool:
    """True when a durable 1 MiB write succeeds below ``root`` (then removed)."""
    path = root / f".probe-{os.getpid()}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * DISK_PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _count_remote(item: _Item) -> None:
    if item.remote:
        metrics.DELIVERIES.labels("forwarded").inc(len(item.remote))


def _attempt(msg: Any) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


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


async def _finish(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        with contextlib.suppress(Exception):
            await task


async def _sleep(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
