"""The receiving half: the peer's ``MIRROR_TO_<THIS NODE>`` (on the peer's NATS) → replica
apply in this store, in stream order.

Each record is applied through the local store's ``apply`` request with ``origin`` = the
peer (so this store's source never ships it back) and acked on the peer's stream only
after the store answered, i.e. after its commit. A record applied already answers
``applied: false`` and is acked too (idempotent). A record replica apply refuses
(:class:`ReplicaConflict`) is not lost: it is kept, body and all, in the local stream
``MIRROR_CONFLICTS`` for the split-brain resolver (issue 13), logged and counted in
``mirror_conflicts_total{kind}``, then acked. Any other failure (store down, timeout)
leaves the record and every later one unacked: they are delivered again, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.logging import get_logger
from mailcore.mailstore import journal
from mailcore.mailstore.records import AppendRecord
from services.mirror.source import REQUEST_TIMEOUT, StoreUnavailable

log = get_logger("mirror")

STREAM_CONFLICTS = "MIRROR_CONFLICTS"
SUBJECT_CONFLICTS = "mirror.conflicts"
RETRY = 1.0  # seconds between attempts while the store does not answer


@dataclass
class SinkStats:
    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


async def declare_conflicts(js: Any) -> None:
    try:
        await js.stream_info(STREAM_CONFLICTS)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=STREAM_CONFLICTS,
                subjects=[SUBJECT_CONFLICTS],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
            )
        )


def conflict_kind(text: str) -> str:
    if "SHA-256" in text:
        return "bytes"
    if "UID" in text:
        return "uid"
    if "UIDVALIDITY" in text:
        return "uidvalidity"
    return "mailbox"


class Sink:
    def __init__(self, local_nc: Any, local_js: Any, peer_js: Any, node: str, peer: str):
        self.nc, self.js, self.peer_js = local_nc, local_js, peer_js
        self.node, self.peer = node, peer
        self.stats = SinkStats()
        self._sub: Any = None

    async def start(self) -> None:
        await declare_conflicts(self.js)
        self._sub = await self.peer_js.pull_subscribe_bind(
            queue.CONSUMER, stream=queue.stream_name(self.node)
        )

    async def pass_once(self, batch: int = 256, timeout: float = 1.0) -> int:
        """Fetch and apply one batch; the number of records handled."""
        if self._sub is None:
            await self.start()
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except TimeoutError:
            return 0
        for i, msg in enumerate(msgs):
            try:
                await self._apply_in_place(msg)
            except Exception:
                for rest in msgs[i:]:
                    await rest.nak()
                raise
            await msg.ack_sync()
        return len(msgs)

    async def _apply_in_place(self, msg: Any) -> None:
        """Apply, retrying this record while the store does not answer (down, starting).

        A nak would let JetStream hand out later records before the redelivery, and an
        append must never overtake the mailbox it goes into: so the record is retried
        here, in stream order, its ack deadline pushed back while it waits."""
        while True:
            try:
                await self._apply(msg)
                return
            except StoreUnavailable as exc:
                self.failed(exc)
                log.warning("mirror sink: store not answering, retrying", error=str(exc))
                await msg.in_progress()
                await asyncio.sleep(RETRY)

    async def _apply(self, msg: Any) -> None:
        headers = dict(msg.headers or {})
        how = headers.get(names.HDR_MIRROR_BODY, "none")
        data = bytes(msg.data)
        if how.startswith("object:"):  # fetch it from the peer's store, hand it to ours
            found = await self._peer_body(headers, how.removeprefix("object:"))
            if isinstance(found, bytes):
                await (await _local_bodies(self.js)).put(how.removeprefix("object:"), found)
            else:  # the peer's store answered with the bytes inline, or "none"
                how, data = found
                headers[names.HDR_MIRROR_BODY] = how
        headers[names.HDR_MIRROR_ORIGIN] = self.peer
        headers.pop(names.HDR_MSG_ID, None)
        try:
            reply = await self.nc.request(
                names.SUBJECT_REPLICA + "apply", data, timeout=REQUEST_TIMEOUT, headers=headers
            )
        except Exception as exc:
            raise StoreUnavailable(f"apply: {type(exc).__name__}") from exc
        result: dict[str, Any] = json.loads(reply.data)
        if "error" in result:
            raise StoreUnavailable(result["error"])
        if "conflict" in result:  # (a large body stays in the local MIRROR_BODIES)
            await self._keep_conflict(headers, data, result)
            return
        if how.startswith("object:"):  # committed: neither copy is needed any more
            name = how.removeprefix("object:")
            await (await _local_bodies(self.js)).delete(name)
            with contextlib.suppress(ObjectNotFoundError, NotFoundError):
                await (await self.peer_js.object_store(names.OBJ_MIRROR_BODIES)).delete(name)
        if result["applied"]:
            self.stats.applied += 1
            metrics.MIRROR_APPLIED.labels(peer=self.peer).inc()
        else:
            self.stats.duplicates += 1

    async def _peer_body(self, headers: dict[str, str], name: str) -> bytes | tuple[str, bytes]:
        """The large body of a record from the peer's ``MIRROR_BODIES``. Once applied here,
        the object is deleted there; a record sent twice (a republish after a crash or a
        resync) then finds it gone, and the bytes are asked of the peer's store again."""
        with contextlib.suppress(ObjectNotFoundError, NotFoundError):
            obj = await (await self.peer_js.object_store(names.OBJ_MIRROR_BODIES)).get(name)
            return bytes(obj.data)
        rec = journal.decode(tuple(json.loads(headers[names.HDR_MIRROR_RECORD])))
        if not isinstance(rec, AppendRecord):
            raise StoreUnavailable(f"object {name} of a record that is no append")
        body = {"account": headers[names.HDR_MIRROR_ACCOUNT], "file_id": rec.file_id}
        try:
            reply = await self.peer_js._nc.request(
                names.SUBJECT_REPLICA + "body", json.dumps(body).encode(), timeout=REQUEST_TIMEOUT
            )
        except Exception as exc:
            raise StoreUnavailable(f"peer body: {type(exc).__name__}") from exc
        how = (reply.headers or {}).get(names.HDR_MIRROR_BODY, "none")
        if how.startswith("object:"):
            obj = await (await self.peer_js.object_store(names.OBJ_MIRROR_BODIES)).get(
                how.removeprefix("object:")
            )
            return bytes(obj.data)
        return how, bytes(reply.data)

    async def _keep_conflict(
        self, headers: dict[str, str], data: bytes, result: dict[str, Any]
    ) -> None:
        kind = conflict_kind(str(result["conflict"]))
        headers["Postern-Mirror-Conflict"] = json.dumps(result)
        await self.js.publish(SUBJECT_CONFLICTS, data, headers=headers)
        self.stats.conflicts += 1
        metrics.MIRROR_CONFLICTS.labels(kind=kind).inc()
        log.error(
            "mirror conflict: record kept for the resolver",
            peer=self.peer,
            account=headers.get(names.HDR_MIRROR_ACCOUNT),
            kind=kind,
            detail=result["conflict"],
        )

    def failed(self, exc: BaseException) -> None:
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.stats.last_error_at = time.time()
        metrics.MIRROR_ERRORS.labels(peer=self.peer, side="sink").inc()


async def _local_bodies(js: Any) -> Any:
    try:
        return await js.object_store(names.OBJ_MIRROR_BODIES)
    except BucketNotFoundError:
        return await js.create_object_store(names.OBJ_MIRROR_BODIES)


__all__ = ["STREAM_CONFLICTS", "Sink", "SinkStats", "conflict_kind", "declare_conflicts"]
