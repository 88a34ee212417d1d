"""Idempotent declaration of every stream, consumer, bucket and object store.

Every service calls :func:`declare_all` at start: the first one creates, the others find
what they expect. A changed limit (``max_bytes``, replicas) is applied in place.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, BadRequestError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from mailcore import credentials
from mailcore.bus import names
from mailcore.config import CommonSettings
from mailcore.logging import get_logger

log = get_logger("bus")

MAX_MSG_SIZE = 1024 * 1024  # NATS max_payload default; bodies above 512 KiB use the Object Store
DUPLICATE_WINDOW = 120.0  # seconds in which an equal Nats-Msg-Id is stored once


@dataclass(frozen=True, slots=True)
class BusLimits:
    inbound_max_bytes: int = 4 * 1024**3
    outbound_max_bytes: int = 1024**3
    bodies_max_bytes: int = 8 * 1024**3
    mirror_max_bytes: int = 1024**3
    dead_max_bytes: int = 1024**3
    credentials_max_bytes: int = 16 * 1024**2
    replicas: int = 1
    delivery_max_deliver: int = 20
    delivery_ack_wait: float = 60.0
    outbound_max_age: float = 6 * 86400.0
    relay_ack_wait: float = 60.0

    @classmethod
    def from_settings(cls, s: CommonSettings, max_deliver: int = 20) -> BusLimits:
        return cls(
            inbound_max_bytes=s.inbound_max_bytes,
            outbound_max_bytes=s.outbound_max_bytes,
            bodies_max_bytes=s.bodies_max_bytes,
            mirror_max_bytes=s.mirror_max_bytes,
            dead_max_bytes=s.dead_max_bytes,
            credentials_max_bytes=s.credentials_max_bytes,
            replicas=s.stream_replicas,
            delivery_max_deliver=max_deliver,
            delivery_ack_wait=s.delivery_ack_wait,
            outbound_max_age=s.outbound_max_age,
            relay_ack_wait=s.relay_ack_wait,
        )


def _mail_stream(
    name: str, subject: str, max_bytes: int, replicas: int, max_age: float | None = None
) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=name,
        subjects=[subject],
        retention=js_api.RetentionPolicy.WORK_QUEUE,
        storage=js_api.StorageType.FILE,
        # A full stream refuses new mail (the filter answers 452) instead of dropping old.
        discard=js_api.DiscardPolicy.NEW,
        max_bytes=max_bytes,
        max_age=max_age,
        max_msg_size=MAX_MSG_SIZE,
        duplicate_window=DUPLICATE_WINDOW,
        num_replicas=replicas,
    )


def stream_configs(limits: BusLimits) -> list[js_api.StreamConfig]:
    return [
        _mail_stream(
            names.STREAM_INBOUND, names.SUBJECT_INBOUND, limits.inbound_max_bytes, limits.replicas
        ),
        _mail_stream(
            names.STREAM_OUTBOUND,
            names.SUBJECT_OUTBOUND,
            limits.outbound_max_bytes,
            limits.replicas,
            # Above the relay's retry period: the relay bounces expired mail first.
            limits.outbound_max_age,
        ),
        js_api.StreamConfig(
            name=names.STREAM_MIRROR,
            subjects=[names.SUBJECT_MIRROR + ".>"],
            retention=js_api.RetentionPolicy.LIMITS,
            storage=js_api.StorageType.FILE,
            discard=js_api.DiscardPolicy.OLD,
            max_bytes=limits.mirror_max_bytes,
            max_msg_size=MAX_MSG_SIZE,
            duplicate_window=DUPLICATE_WINDOW,
            num_replicas=limits.replicas,
        ),
        dead_stream(limits),
        js_api.StreamConfig(
            name=names.STREAM_PROBE,
            subjects=[names.SUBJECT_PROBE],
            retention=js_api.RetentionPolicy.LIMITS,
            storage=js_api.StorageType.FILE,
            discard=js_api.DiscardPolicy.OLD,
            max_msgs=1,
            max_bytes=64 * 1024,
            num_replicas=limits.replicas,
        ),
    ]


def dead_stream(limits: BusLimits) -> js_api.StreamConfig:
    """Dead letters stay until an operator retries or drops them (``mailctl queue dead``):
    limits retention, no age limit, and a full stream refuses new dead letters (discard
    new) rather than silently dropping old ones; the store then keeps the mail on the
    inbound stream and logs the failure."""
    return js_api.StreamConfig(
        name=names.STREAM_DEAD,
        subjects=[names.SUBJECT_DEAD],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        discard=js_api.DiscardPolicy.NEW,
        max_bytes=limits.dead_max_bytes,
        max_msg_size=MAX_MSG_SIZE,
        duplicate_window=DUPLICATE_WINDOW,
        num_replicas=limits.replicas,
    )


def delivery_consumer(limits: BusLimits) -> js_api.ConsumerConfig:
    # The first wait for an ack is the first backoff step; later redeliveries back off.
    backoff = [limits.delivery_ack_wait, 120.0, 300.0, 900.0, 1800.0]
    return js_api.ConsumerConfig(
        durable_name=names.CONSUMER_DELIVERY,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        filter_subject=names.SUBJECT_INBOUND,
        ack_wait=limits.delivery_ack_wait,
        max_deliver=limits.delivery_max_deliver,
        backoff=backoff[: limits.delivery_max_deliver],
        max_ack_pending=20_000,
        max_waiting=64,
    )


def relay_consumer(limits: BusLimits) -> js_api.ConsumerConfig:
    """Every relay process binds this one durable: a message goes to one relay at a time,
    which reports progress while it talks to the remote MX; retries are naks with the
    relay's own delay (no max_deliver: the relay gives up by age and bounces)."""
    return js_api.ConsumerConfig(
        durable_name=names.CONSUMER_RELAY,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        filter_subject=names.SUBJECT_OUTBOUND,
        ack_wait=limits.relay_ack_wait,
        max_deliver=-1,
        max_ack_pending=20_000,
        max_waiting=64,
    )


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    try:
        info = await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", stream=config.name)
        return
    current = info.config
    if (current.max_bytes, current.num_replicas, current.subjects, current.max_age or 0) != (
        config.max_bytes,
        config.num_replicas,
        config.subjects,
        config.max_age or 0,
    ):
        await js.update_stream(config)
        log.info("stream updated", stream=config.name)


async def ensure_consumer(js: JetStreamContext, stream: str, config: js_api.ConsumerConfig) -> None:
    try:
        await js.add_consumer(stream, config)
    except BadRequestError as exc:
        # An existing durable with other settings: update what the server lets us update.
        log.warning("consumer not updated", consumer=config.durable_name, error=str(exc))


async def ensure_kv(
    js: JetStreamContext,
    bucket: str,
    *,
    history: int,
    replicas: int,
    ttl: float | None = None,
    max_bytes: int | None = None,
) -> KeyValue:
    try:
        kv = await js.key_value(bucket)
    except NotFoundError:
        pass
    else:
        if max_bytes is not None:  # a changed budget applies in place, as for streams
            info = await js.stream_info("KV_" + bucket)
            if info.config.max_bytes != max_bytes:
                info.config.max_bytes = max_bytes
                await js.update_stream(info.config)
                log.info("kv bucket updated", bucket=bucket, max_bytes=max_bytes)
        return kv
    kv = await js.create_key_value(
        js_api.KeyValueConfig(
            bucket=bucket,
            history=history,
            ttl=ttl,
            max_bytes=max_bytes,
            storage=js_api.StorageType.FILE,
            replicas=replicas,
        )
    )
    log.info("kv bucket created", bucket=bucket)
    return kv


async def ensure_object_store(js: JetStreamContext, limits: BusLimits) -> ObjectStore:
    try:
        return await js.object_store(names.OBJ_BODIES)
    except NotFoundError:
        store = await js.create_object_store(
            names.OBJ_BODIES,
            config=js_api.ObjectStoreConfig(
                bucket=names.OBJ_BODIES,
                max_bytes=limits.bodies_max_bytes,
                storage=js_api.StorageType.FILE,
                replicas=limits.replicas,
            ),
        )
        log.info("object store created", bucket=names.OBJ_BODIES)
        return store


class SetupError(Exception):
    """NATS refused a stream or bucket; the message says what to change (one line)."""


INSUFFICIENT_STORAGE = 10047  # JetStream API error: "insufficient storage resources"


def explain(exc: APIError, what: str) -> str:
    if exc.err_code == INSUFFICIENT_STORAGE:
        return (
            f"NATS has not enough JetStream storage for {what} (error 10047: the stream "
            "budgets exceed what JetStream may use, by default 75 % of the free disk): free "
            "disk space, or lower POSTERN_INBOUND_MAX_BYTES, POSTERN_BODIES_MAX_BYTES, "
            "POSTERN_OUTBOUND_MAX_BYTES, POSTERN_MIRROR_MAX_BYTES, POSTERN_DEAD_MAX_BYTES, "
            "POSTERN_CREDENTIALS_MAX_BYTES, "
            "or raise the NATS server's jetstream max_file_store"
        )
    return f"NATS refused {what}: {exc.description} (error {exc.err_code})"


async def declare_all(js: JetStreamContext, limits: BusLimits) -> None:
    """Create or check everything Postern puts on NATS; :class:`SetupError` when NATS
    refuses one of them (no space for the budgets, above all)."""
    try:
        await _declare_all(js, limits)
    except APIError as exc:
        raise SetupError(explain(exc, "the streams")) from None


async def _declare_all(js: JetStreamContext, limits: BusLimits) -> None:
    for config in stream_configs(limits):
        await ensure_stream(js, config)
    await ensure_consumer(js, names.STREAM_INBOUND, delivery_consumer(limits))
    await ensure_consumer(js, names.STREAM_OUTBOUND, relay_consumer(limits))
    await ensure_kv(js, names.KV_RELAY, history=1, replicas=limits.replicas)
    await ensure_kv(js, names.KV_DIRECTORY, history=5, replicas=limits.replicas)
    await ensure_kv(
        js,
        names.KV_CREDENTIALS,
        history=1,
        replicas=limits.replicas,
        max_bytes=limits.credentials_max_bytes,
    )
    await ensure_kv(js, names.KV_SESSIONS, history=1, replicas=limits.replicas, ttl=30 * 86400)
    await ensure_kv(
        js,
        names.KV_AUTH_FAILURES,
        history=1,
        replicas=limits.replicas,
        ttl=names.AUTH_FAILURE_WINDOW,
    )
    await ensure_object_store(js, limits)
    # hashes a directory from before CREDENTIALS still holds go there (an upgrade)
    await credentials.move_legacy_hashes(js)


DECLARED = (
    names.STREAM_INBOUND,
    names.STREAM_OUTBOUND,
    names.STREAM_MIRROR,
    names.STREAM_DEAD,
    names.STREAM_PROBE,
    "KV_" + names.KV_RELAY,
    "KV_" + names.KV_DIRECTORY,
    "KV_" + names.KV_CREDENTIALS,
    "KV_" + names.KV_SESSIONS,
    "KV_" + names.KV_AUTH_FAILURES,
    "OBJ_" + names.OBJ_BODIES,
)
"""What :func:`declare_all` makes, by stream name (KV and object stores are streams)."""


async def await_declared(
    js: JetStreamContext, stopping: asyncio.Event, interval: float = 1.0
) -> None:
    """Wait until everything :func:`declare_all` makes exists. A service connected as its
    own NATS user may only look (mailcore.bus.permissions); ``mailctl up`` and compose's
    nats container declare as the administrator. Logs once while it waits."""
    waiting = False
    while not stopping.is_set():
        missing = []
        for stream in DECLARED:
            try:
                await js.stream_info(stream)
            except NotFoundError:
                missing.append(stream)
        if not missing:
            return
        if not waiting:
            log.warning("waiting for the administrator to declare streams", missing=missing)
            waiting = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)


async def inbound_fill(js: JetStreamContext) -> float:
    """How full the inbound stream is, 0..1 of its byte budget (the filter's 452 gate)."""
    info = await js.stream_info(names.STREAM_INBOUND)
    budget = info.config.max_bytes or 0
    if budget <= 0:
        return 0.0
    return float(info.state.bytes) / float(budget)
