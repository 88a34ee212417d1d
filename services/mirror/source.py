"""The sending half: this store's journal → ``MIRROR_TO_<PEER>`` on this store's NATS.

For every account the store holds, the registered reader ``mirror:<peer>`` reads the next
records (those the store applied *from* the peer are left out by the store: never shipped
back), each is published with its body (inline, or the ``MIRROR_BODIES`` object the store
put there above 512 KiB; the bodies of a batch asked of the store together, ``bodies``)
and ``Nats-Msg-Id`` ``<account>:<seq>``, and only after every PubAck is the reader's
position confirmed. A crash in between republishes what was not
confirmed; the stream's de-duplication window (and replica apply being idempotent) makes
that harmless. While the peer is down the records simply stay in the stream (file storage).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.logging import get_logger
from mailcore.mailstore import journal
from mailcore.mailstore.records import AppendRecord

log = get_logger("mirror")

REQUEST_TIMEOUT = 30.0
INLINE_MAX = 512 * 1024  # larger bodies come as MIRROR_BODIES objects (replica_rpc.py)
BODIES_MAX = 768 * 1024  # inline bytes asked of the store in one ``bodies`` request
CHANGED_GAP = 0.05  # seconds between two passes woken by the store's change notices


class StoreUnavailable(Exception):
    """The local store did not answer a replica request (it is down or starting)."""


async def request(nc: Any, op: str, body: dict[str, Any]) -> Any:
    """One replica request to the local store; the reply message."""
    try:
        return await nc.request(
            names.SUBJECT_REPLICA + op, json.dumps(body).encode(), timeout=REQUEST_TIMEOUT
        )
    except Exception as exc:  # no responders, timeout, connection lost
        raise StoreUnavailable(f"{op}: {type(exc).__name__}") from exc


def reply_json(msg: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(msg.data)
    if "error" in value:
        raise StoreUnavailable(value["error"])
    return value


@dataclass
class SourceStats:
    added: int = 0
    sent: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    resync: list[str] = field(default_factory=list)
    # start of the last pass that found nothing to send: every record committed before
    # it is in the peer's queue (mailctl mirror promote waits for this)
    idle_since: float | None = None


class Source:
    def __init__(self, nc: Any, js: Any, peer: str, *, batch: int = 500) -> None:
        self.nc, self.js, self.peer, self.batch = nc, js, peer, batch
        self.reader = f"mirror:{peer}"
        self.stats = SourceStats()
        # accounts the store said changed since they were last read (its change notices:
        # services/store/mirror_changed.py); :meth:`pass_changed` reads only those
        self.changed: set[str] = set()
        self._full_at = 0.0  # when the last pass over every account started

    def on_changed(self, accounts: list[str]) -> None:
        self.changed.update(accounts)

    async def pass_due(self, every: float) -> int:
        """The pass due now: over every account each ``every`` seconds (and when woken
        without a change notice), else over the accounts the store named; each of those
        is read until nothing is left, so that pass answers 0 (wait for the next notice)
        after a pause of CHANGED_GAP: the notices of that moment come together (a pass
        per commit costs a store under load more requests than it has records)."""
        if self.changed and time.monotonic() - self._full_at < every:
            await self.pass_changed()
            await asyncio.sleep(CHANGED_GAP)
            return 0
        self._full_at = time.monotonic()
        return await self.pass_once()

    async def pass_once(self) -> int:
        """Ship what every account has for the peer; the number of records sent."""
        started = time.time()
        self.changed.clear()  # every account is read now
        accounts = reply_json(await request(self.nc, "accounts", {}))["accounts"]
        total = await self._ship(accounts)
        if total == 0:
            self.stats.idle_since = started
        return total

    async def pass_changed(self) -> int:
        """Ship what the accounts the store said changed have for the peer (one it no
        longer holds reads as empty); the number of records sent. Not a full pass:
        ``idle_since`` stays."""
        changed, self.changed = self.changed, set()
        try:
            return await self._ship(sorted(changed))
        except BaseException:
            self.changed |= changed  # read again on the next pass
            raise

    async def _ship(self, accounts: list[str]) -> int:
        total = 0
        for account in accounts:
            while True:
                sent, more = await self._account(account)
                total += sent
                if not more:
                    break
        return total

    async def _account(self, account: str) -> tuple[int, bool]:
        reply = reply_json(
            await request(
                self.nc,
                "read",
                {
                    "account": account,
                    "reader": self.reader,
                    "origin": self.peer,
                    "limit": self.batch,
                },
            )
        )
        if reply.get("resync"):
            if account not in self.stats.resync:
                self.stats.resync.append(account)
                log.error("mirror reader must resync", account=account, peer=self.peer)
            return 0, False
        rows: list[list[Any]] = reply["records"]
        last = int(reply["last"])
        bodies = await self._bodies(account, rows)
        acks = []
        for row in rows:
            headers = {
                names.HDR_MIRROR_ACCOUNT: account,
                names.HDR_MIRROR_RECORD: json.dumps(row),
                # a crash before the confirm republishes the same ids (dropped as
                # duplicates); a resync resets the reader: a new generation, new ids
                names.HDR_MSG_ID: f"{account}:{row[0]}:{reply.get('generation', 0)}",
                names.HDR_MIRROR_BODY: "none",
            }
            data = b""
            if row[1] == "append":
                headers[names.HDR_MIRROR_BODY], data = bodies[int(row[0])]
            acks.append(self.js.publish(queue.subject(self.peer), data, headers=headers))
        self.stats.added += len(rows)
        metrics.MIRROR_ADDED.labels(peer=self.peer).inc(len(rows))
        # every PubAck first (the stream has them on disk): only then the position moves
        await asyncio.gather(*acks)
        self.stats.sent += len(rows)
        metrics.MIRROR_SENT.labels(peer=self.peer).inc(len(rows))
        if last:  # records read (some may have been the peer's own, skipped)
            reply_json(
                await request(
                    self.nc, "confirm", {"account": account, "reader": self.reader, "seq": last}
                )
            )
        return len(rows), bool(rows) and len(rows) >= self.batch

    async def _bodies(self, account: str, rows: list[list[Any]]) -> dict[int, tuple[str, bytes]]:
        """The bodies of the append records among ``rows`` by ``seq``: ``(how, bytes)``,
        asked of the store a group at a time (``bodies``, at most BODIES_MAX of inline
        bytes by the records' sizes) rather than one request per record."""
        appends: list[AppendRecord] = []
        for row in rows:
            if row[1] == "append":
                rec = journal.decode(tuple(row))
                assert isinstance(rec, AppendRecord)
                appends.append(rec)
        groups: list[list[AppendRecord]] = []
        size = 0
        for rec in appends:
            cost = rec.size if rec.size <= INLINE_MAX else 0  # larger: an object, by name
            if groups and size + cost <= BODIES_MAX:
                groups[-1].append(rec)
                size += cost
            else:
                groups.append([rec])
                size = cost
        out: dict[int, tuple[str, bytes]] = {}
        for group in groups:
            ask = {"account": account, "file_ids": [r.file_id for r in group]}
            reply = await request(self.nc, "bodies", ask)
            head, _, rest = bytes(reply.data).partition(b"\n")
            index = json.loads(head)
            if not isinstance(index, list):  # {"error": ...}
                raise StoreUnavailable(str(index.get("error", "bodies: no index")))
            at = 0
            for rec, (how, length) in zip(group, index, strict=True):
                out[rec.seq] = (str(how), rest[at : at + int(length)])
                at += int(length)
        return out

    def failed(self, exc: BaseException) -> None:
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.stats.last_error_at = time.time()
        metrics.MIRROR_ERRORS.labels(peer=self.peer, side="source").inc()


__all__ = ["Source", "SourceStats", "StoreUnavailable", "reply_json", "request"]
