"""The receiving half: the peer's ``MIRROR_TO_<THIS NODE>`` (on the peer's NATS) → replica
apply in this store, in stream order.

Records are applied through the local store's ``apply_batch`` request (up to 256 records
a request, group-committed by the store: mailcore/bus/replica_batch.py) with ``origin`` =
the peer (so this store's source never ships it back), and each is acked on the peer's
stream only after the store answered, i.e. after its commit. A record applied already answers
``applied: false`` and is acked too (idempotent). A record replica apply refuses
(:class:`ReplicaConflict`) is not lost: it is kept, body and all, in the local stream
``MIRROR_CONFLICTS`` for the split-brain resolver (issue 13), logged and counted in
``mirror_conflicts_total{kind}``, then acked. Any other failure (store down, timeout)
leaves the record and every later one unacked: they are delivered again, in order.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.bus import names, replica_batch
from mailcore.logging import get_logger
from services.mirror.source import REQUEST_TIMEOUT, StoreUnavailable

log = get_logger("mirror")

STREAM_CONFLICTS = "MIRROR_CONFLICTS"
SUBJECT_CONFLICTS = "mirror.conflicts"


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
        """Fetch and apply one batch; the number of records handled. The records go to
        the store several per request (``apply_batch``, group-committed there)."""
        if self._sub is None:
            await self.start()
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except TimeoutError:
            return 0
        done = 0
        try:
            entries = [await self._entry(msg) for msg in msgs]
            for chunk in replica_batch.chunks(entries):
                results = await self._apply_chunk(chunk)
                for entry, result in zip(chunk, results, strict=False):
                    if "error" in result:
                        raise StoreUnavailable(str(result["error"]))
                    await self._settled(entry, result)
                    msg = msgs[done]
                    # the last ack waits for the server: the others are on the wire by then
                    await (msg.ack_sync() if done == len(msgs) - 1 else msg.ack())
                    done += 1
                if len(results) < len(chunk):
                    raise StoreUnavailable("apply_batch: cut short")
        except Exception:
            # Redeliveries come before new records, in the order of these naks: the
            # records stay in stream order (an append never overtakes its mailbox).
            for rest in msgs[done:]:
                await rest.nak()
            raise
        return len(msgs)

    async def _entry(self, msg: Any) -> replica_batch.BatchEntry:
        headers = dict(msg.headers or {})
        how = headers.get(names.HDR_MIRROR_BODY, "none")
        if how.startswith("object:"):  # fetch it from the peer's store, hand it to ours
            name = how.removeprefix("object:")
            obj = await (await self.peer_js.object_store(names.OBJ_MIRROR_BODIES)).get(name)
            await (await _local_bodies(self.js)).put(name, obj.data)
        return replica_batch.BatchEntry(
            account=headers[names.HDR_MIRROR_ACCOUNT],
            row=json.loads(headers[names.HDR_MIRROR_RECORD]),
            body=how,
            origin=self.peer,
            data=bytes(msg.data) if how == "inline" else b"",
        )

    async def _apply_chunk(self, chunk: list[replica_batch.BatchEntry]) -> list[dict[str, Any]]:
        try:
            reply = await self.nc.request(
                names.SUBJECT_REPLICA + "apply_batch",
                replica_batch.encode(chunk),
                timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:
            raise StoreUnavailable(f"apply: {type(exc).__name__}") from exc
        answer: dict[str, Any] = json.loads(reply.data)
        if "error" in answer:
            raise StoreUnavailable(str(answer["error"]))
        results: list[dict[str, Any]] = answer["results"]
        return results

    async def _settled(self, entry: replica_batch.BatchEntry, result: dict[str, Any]) -> None:
        """Count a record the store answered for; keep it if it was refused."""
        if "conflict" in result:  # (a large body stays in the local MIRROR_BODIES)
            headers = {
                names.HDR_MIRROR_ACCOUNT: entry.account,
                names.HDR_MIRROR_RECORD: json.dumps(entry.row),
                names.HDR_MIRROR_BODY: entry.body,
                names.HDR_MIRROR_ORIGIN: self.peer,
            }
            await self._keep_conflict(headers, entry.data, result)
            return
        if entry.body.startswith("object:"):  # committed: the local copy is not needed
            await (await _local_bodies(self.js)).delete(entry.body.removeprefix("object:"))
        if result["applied"]:
            self.stats.applied += 1
            metrics.MIRROR_APPLIED.labels(peer=self.peer).inc()
        else:
            self.stats.duplicates += 1

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
