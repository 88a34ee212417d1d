"""The receiving half: the peer's ``MIRROR_TO_<THIS NODE>`` (on the peer's NATS) → replica
apply in this store, in stream order.

Records are applied through the local store's ``apply_batch`` request (up to 256 records a
request, group-committed by the store: mailcore/bus/replica_batch.py) with ``origin`` =
the peer (so this store's source never ships it back), and each is acked on the peer's
stream only after the store answered, i.e. after its commit. While the store applies one
batch the next is fetched from the peer's queue (two in flight); it follows on in stream
order from the last record acked, so no question about the queue's head is needed for it,
and :meth:`Sink.stop` puts back a batch fetched ahead but not applied. A record applied already
answers ``applied: false`` and is acked too (idempotent). Split-brain collisions (a UID
used for different messages on the two sides, equal-modseq flags, concurrent renames) are
settled by the store (mailcore/mailstore/splitbrain.py; this node resolves when its name
sorts before the peer's, else it defers) and each resolution logged and counted in
``mirror_conflicts_total{kind}``; so are mailboxes made, renamed or deleted on both sides
(mailcore/mailstore/splitboxes.py). A record replica apply still refuses
(:class:`ReplicaConflict`, e.g. on a follower, which settles nothing) is not
lost: it is kept, body and all, in the local stream ``MIRROR_CONFLICTS``, logged and
counted, then acked. While the store does not answer the chunk is retried in place (with
backoff, one log line per outage); any
other failure leaves the record and every later one unacked: they are delivered again,
in order (only records that follow the oldest one left in the queue are applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError, ObjectNotFoundError

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.bus import mirror_buckets, names, replica_batch
from mailcore.logging import get_logger
from mailcore.mailstore import journal
from mailcore.mailstore.records import AppendRecord
from services.mirror.outage import Outage
from services.mirror.source import REQUEST_TIMEOUT, StoreUnavailable

log = get_logger("mirror")

STREAM_CONFLICTS = "MIRROR_CONFLICTS"
SUBJECT_CONFLICTS = "mirror.conflicts"
RETRY_CAP = 2.0  # the longest pause between attempts while the store does not answer


@dataclass
class SinkStats:
    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    resolved: int = 0
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
                num_replicas=await mirror_buckets.replicas(js),
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
    def __init__(
        self,
        local_nc: Any,
        local_js: Any,
        peer_js: Any,
        node: str,
        peer: str,
        *,
        peer_nc: Any = None,
        settle: bool = True,
        trash: bool = False,
    ):
        self.trash = trash  # the peer's deletes become moves to Trash (mirrortrash.py)
        self.settle = settle  # False (a read-only follower): conflicts are only kept
        self.nc, self.js, self.peer_js, self.peer_nc = local_nc, local_js, peer_js, peer_nc
        self.node, self.peer = node, peer
        self.stats = SinkStats()
        self._applied = metrics.MIRROR_APPLIED.labels(peer=peer)  # (looked up once)
        self._sub: Any = None
        # the next batch, fetched from the peer's queue while this one is applied (two
        # batches in flight); and the stream sequence of the last record applied and acked
        self._ahead: asyncio.Future[list[Any]] | None = None
        self._after: int | None = None
        self.store_outage = Outage(
            "the local store is not answering the peer's records",
            "the local store answers the peer's records again",
            cap=RETRY_CAP,
            peer=peer,
        )

    async def start(self) -> None:
        await declare_conflicts(self.js)
        self._sub = await self.peer_js.pull_subscribe_bind(
            queue.CONSUMER, stream=queue.stream_name(self.node)
        )

    async def stop(self) -> None:
        """Put back the batch fetched ahead (redelivered at once, in order; the fetch
        ends within its timeout). Call it when done with the sink."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        with contextlib.suppress(Exception):
            for msg in await ahead:
                with contextlib.suppress(Exception):
                    await msg.nak()

    async def fetched_ahead(self) -> int:
        """The number of records fetched ahead for the next pass (once the fetch ended)."""
        return len(await self._ahead) if self._ahead is not None else 0

    async def _fetch(self, batch: int, timeout: float) -> list[Any]:
        try:
            msgs: list[Any] = await self._sub.fetch(batch, timeout=timeout)
        except TimeoutError:
            return []
        return msgs

    async def pass_once(self, batch: int = 256, timeout: float = 1.0) -> int:
        """Apply one batch (fetched ahead by the previous pass, or now) and fetch the next
        one meanwhile; the number of records handled."""
        if self._sub is None:
            await self.start()
        ahead, self._ahead = self._ahead, None
        msgs = await (ahead if ahead is not None else self._fetch(batch, timeout))
        msgs = await self._in_order(msgs)
        if not msgs:
            return 0
        # the peer's NATS hands out the next records while the store applies these
        self._ahead = asyncio.ensure_future(self._fetch(batch, timeout))
        try:
            await self._apply_msgs(msgs)
        except Exception:
            self._after = None  # what was fetched ahead is not next any more: put back
            await self.stop()
            raise
        self._after = int(msgs[-1].metadata.sequence.stream)
        return len(msgs)

    async def _apply_msgs(self, msgs: list[Any]) -> None:
        """Apply records in order, each acked after the store's commit."""
        done = 0
        committed: dict[str, int] = {}
        try:
            entries = [await self._entry(msg) for msg in msgs]
            for chunk in replica_batch.chunks(entries):
                results = await self._apply_in_place(chunk, msgs[done:])
                for entry, result in zip(chunk, results, strict=False):
                    if "error" in result:
                        raise StoreUnavailable(str(result["error"]))
                    await self._settled(entry, result)
                    msg = msgs[done]
                    # the last ack waits for the server: the others are on the wire by then
                    await (msg.ack_sync() if done == len(msgs) - 1 else msg.ack())
                    committed[entry.account] = int(entry.row[0])
                    done += 1
                if len(results) < len(chunk):
                    raise StoreUnavailable("apply_batch: cut short")
        except Exception:
            # the rest comes again; _in_order keeps them in stream order
            for rest in msgs[done:]:
                await rest.nak()
            raise
        finally:
            await self._tell_committed(committed)

    async def _apply_in_place(
        self, chunk: list[replica_batch.BatchEntry], waiting: list[Any]
    ) -> list[dict[str, Any]]:
        """Apply a chunk, retrying it while the store does not answer (down, starting).

        A nak would let JetStream hand out later records before the redelivery, and an
        append must never overtake the mailbox it goes into: so the chunk is retried
        here, in stream order, the ack deadlines of the waiting records pushed back."""
        while True:
            try:
                results = await self._apply_chunk(chunk)
            except StoreUnavailable as exc:
                self.failed(exc)
                delay = self.store_outage.failed(exc)  # one line per outage (outage.py)
                if self._ahead is not None and self._ahead.done() and not self._ahead.cancelled():
                    waiting = [*waiting, *self._ahead.result()]  # fetched ahead: wait too
                for msg in waiting:
                    await msg.in_progress()
                await asyncio.sleep(delay)
                continue
            self.store_outage.ok()
            return results

    async def _in_order(self, msgs: list[Any]) -> list[Any]:
        """The records of the batch that follow the oldest one left in the peer's queue
        without a gap. A record delivered ahead of older ones (those went to a pull request
        that expired under load: they come back after the ack wait) is put back, so
        records are applied in journal order (a mailbox before its mail, a collision
        settled the same way on both sides)."""
        if not msgs:
            return msgs
        # A batch mixes redeliveries (naked or expired) with first deliveries, not in
        # stream order: the oldest record may come anywhere in it. Judged by the batch's
        # first message, it was put back with the rest every time (a link reset left a
        # pair stuck with 1,000 records pending, the oldest never first): sort first.
        msgs = sorted(msgs, key=lambda m: int(m.metadata.sequence.stream))
        if self._after is not None and msgs[0].metadata.sequence.stream == self._after + 1:
            # fetched ahead, right after the batch applied and acked last: every record
            # before it is acked, so it is the oldest left (no question to the peer's NATS)
            expect = self._after + 1
        else:
            info = await self.peer_js.stream_info(queue.stream_name(self.node))
            expect = info.state.first_seq
        ordered = []
        for msg in msgs:
            if msg.metadata.sequence.stream != expect:
                break
            ordered.append(msg)
            expect += 1
        for msg in msgs[len(ordered) :]:
            await msg.nak(delay=1.0)
        return ordered

    async def _tell_committed(self, committed: dict[str, int]) -> None:
        """On the peer's NATS: its records up to these are committed here (what a store
        in synchronous mode waits for: services/store/mirror_sync.py)."""
        if self.peer_nc is None:
            return
        with contextlib.suppress(Exception):
            for account, seq in committed.items():
                note = {"node": self.node, "account": account, "seq": seq}
                await self.peer_nc.publish(
                    names.SUBJECT_MIRROR_COMMITTED, json.dumps(note).encode()
                )
            await self.peer_nc.flush(timeout=2)

    async def _entry(self, msg: Any) -> replica_batch.BatchEntry:
        headers = dict(msg.headers or {})
        how = headers.get(names.HDR_MIRROR_BODY, "none")
        data = bytes(msg.data)
        if how.startswith("object:"):  # fetch it from the peer's store, hand it to ours
            found = await self._peer_body(headers, how.removeprefix("object:"))
            if isinstance(found, bytes):
                await (await _local_bodies(self.js)).put(how.removeprefix("object:"), found)
            else:  # the peer's store answered with the bytes inline, or "none"
                how, data = found
        resolve: str | None = None
        if self.settle:
            # split brain: the node whose name sorts first gives out new UIDs, the other defers
            resolve = "resolver" if self.node < self.peer else "defer"
        return replica_batch.BatchEntry(
            account=headers[names.HDR_MIRROR_ACCOUNT],
            row=json.loads(headers[names.HDR_MIRROR_RECORD]),
            body=how,
            origin=self.peer,
            data=data if how == "inline" else b"",
            resolve=resolve,
            trash=self.settle and self.trash,
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
            await self._keep_conflict(self._headers(entry), entry.data, result)
            return
        if entry.body.startswith("object:"):  # committed: neither copy is needed any more
            name = entry.body.removeprefix("object:")
            await (await _local_bodies(self.js)).delete(name)
            with contextlib.suppress(ObjectNotFoundError, NotFoundError):
                await (await self.peer_js.object_store(names.OBJ_MIRROR_BODIES)).delete(name)
        for kind, detail in result.get("resolved", ()):
            self._resolved(entry.account, kind, detail)
        if result["applied"]:
            self.stats.applied += 1
            self._applied.inc()
        else:
            self.stats.duplicates += 1

    def _headers(self, entry: replica_batch.BatchEntry) -> dict[str, str]:
        """The record as the peer sent it: what a conflict is kept with."""
        return {
            names.HDR_MIRROR_ACCOUNT: entry.account,
            names.HDR_MIRROR_RECORD: json.dumps(entry.row),
            names.HDR_MIRROR_BODY: entry.body,
            names.HDR_MIRROR_ORIGIN: self.peer,
        }

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

    def _resolved(self, account: str, kind: str, detail: str) -> None:
        self.stats.resolved += 1
        metrics.MIRROR_CONFLICTS.labels(kind=kind).inc()
        log.warning(
            "mirror conflict resolved",
            peer=self.peer,
            account=account,
            kind=kind,
            detail=detail,
        )

    def failed(self, exc: BaseException) -> None:
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.stats.last_error_at = time.time()
        metrics.MIRROR_ERRORS.labels(peer=self.peer, side="sink").inc()


async def _local_bodies(js: Any) -> Any:
    return await mirror_buckets.bodies(js)


__all__ = ["STREAM_CONFLICTS", "Sink", "SinkStats", "conflict_kind", "declare_conflicts"]
