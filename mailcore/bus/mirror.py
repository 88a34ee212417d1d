"""The mirror's queue for a peer, on the sending store's NATS, and its status.

``MIRROR_TO_<PEER>`` (subject ``mirror.to.<peer>``): file storage, work-queue retention
(a record leaves once the peer's mirror acked it, i.e. after the peer committed it),
``max_bytes`` with new records refused when full (they wait in the journal instead, never
dropped), de-duplication by ``Nats-Msg-Id`` (``<account>:<seq>``). The durable consumer
``mirror`` exists from the start, so records queue while the peer is down. Bodies above
512 KiB are objects of ``MIRROR_BODIES`` on the same server. The mirror process keeps its
counters in the KV bucket ``MIRROR_STATUS`` (``mailctl mirror status`` reads them).
"""

from __future__ import annotations

import json
import time
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from mailcore.bus import mirror_buckets, names

CONSUMER = "mirror"
KV_STATUS = "MIRROR_STATUS"
DEDUP_WINDOW = 600.0  # seconds: a republished record within this is stored once


def stream_name(peer: str) -> str:
    return names.STREAM_MIRROR_TO + peer.upper().replace("-", "_")


def subject(peer: str) -> str:
    return names.SUBJECT_MIRROR_TO + peer


async def declare(js: JetStreamContext, peer: str, max_bytes: int) -> None:
    """The stream and its durable consumer (idempotent)."""
    name = stream_name(peer)
    config = StreamConfig(
        name=name,
        subjects=[subject(peer)],
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        discard=DiscardPolicy.NEW,
        max_bytes=max_bytes,
        duplicate_window=DEDUP_WINDOW,
        num_replicas=await mirror_buckets.replicas(js),
    )
    try:
        await js.stream_info(name)
        await js.update_stream(config)
    except NotFoundError:
        await js.add_stream(config)
    await js.add_consumer(
        name,
        ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_ack_pending=1000,
        ),
    )


async def status_bucket(js: JetStreamContext) -> Any:
    return await mirror_buckets.key_value(js, KV_STATUS, history=1)


async def write_status(js: JetStreamContext, key: str, values: dict[str, Any]) -> None:
    kv = await status_bucket(js)
    await kv.put(key, json.dumps(values).encode())


async def read_status(js: JetStreamContext, key: str) -> dict[str, Any]:
    try:
        kv = await js.key_value(KV_STATUS)
        entry = await kv.get(key)
    except (BucketNotFoundError, NotFoundError, KeyError):
        return {}
    if entry.value is None:
        return {}
    value: dict[str, Any] = json.loads(entry.value)
    return value


async def queue(js: JetStreamContext, peer: str) -> tuple[int, float]:
    """Records queued for ``peer`` and the age (seconds) of the oldest one (0: none)."""
    try:
        info = await js.stream_info(stream_name(peer))
    except NotFoundError:
        return 0, 0.0
    count = info.state.messages
    if not count:
        return 0, 0.0
    try:
        first = await js.get_msg(stream_name(peer), seq=info.state.first_seq)
    except NotFoundError:
        return count, 0.0
    row = json.loads((first.headers or {}).get(names.HDR_MIRROR_RECORD, "null") or "null")
    at = float(row[3]) if row else time.time()
    return count, max(0.0, time.time() - at)


__all__ = [
    "CONSUMER",
    "KV_STATUS",
    "declare",
    "queue",
    "read_status",
    "status_bucket",
    "stream_name",
    "subject",
    "write_status",
]
