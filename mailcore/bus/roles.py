"""Mirror roles: which store of a pair is ``master`` (takes inbound mail) and which is
``slave`` (SurgeMail's ``g_mirror_mode``). Both serve IMAP/POP3 and take writes.

Each store's role lives in the KV bucket ``MIRROR_ROLE`` on that store's own NATS (file
storage: it survives restarts of the store and of NATS), key ``role``: ``{"role",
"epoch", "node", "at"}``. A store started with ``POSTERN_MIRROR_ROLE`` and no record yet
writes one at epoch 0; after that the record wins over the setting. ``mailctl mirror
promote`` writes both sides with the next epoch; a side that missed a promote (down, or
its NATS unreachable) learns it from the peer: a master at a higher epoch makes it slave
(:func:`reconcile`, run by the mirror process whenever the peer link is up).

The store writes its heartbeat under ``store``: ``{"consuming", "epoch", "at"}``, so a
promote can wait until the old master has stopped taking inbound mail.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from mailcore.bus import mirror_buckets

KV_ROLE = "MIRROR_ROLE"
KEY_ROLE = "role"
KEY_STORE = "store"
MASTER, SLAVE = "master", "slave"
HEARTBEAT = 1.0  # seconds between the store's heartbeats
STALE = 5.0  # a heartbeat older than this: the store is not running

Role = Literal["master", "slave"]


@dataclass(frozen=True)
class RoleRecord:
    role: str
    epoch: int
    node: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class StoreBeat:
    consuming: bool
    epoch: int
    at: float

    @property
    def alive(self) -> bool:
        return time.time() - self.at < STALE


def other(role: str) -> str:
    return SLAVE if role == MASTER else MASTER


async def bucket(js: Any) -> Any:
    return await mirror_buckets.key_value(js, KV_ROLE, history=5)


async def _get(js: Any, key: str) -> dict[str, Any] | None:
    try:
        entry = await (await js.key_value(KV_ROLE)).get(key)
    except (BucketNotFoundError, KeyNotFoundError, NotFoundError):
        return None
    if entry.value is None:
        return None
    value: dict[str, Any] = json.loads(entry.value)
    return value


async def read(js: Any) -> RoleRecord | None:
    value = await _get(js, KEY_ROLE)
    if value is None:
        return None
    return RoleRecord(str(value["role"]), int(value["epoch"]), value.get("node", ""), value["at"])


async def write(js: Any, role: str, epoch: int, node: str) -> RoleRecord:
    rec = RoleRecord(role, epoch, node, time.time())
    await (await bucket(js)).put(KEY_ROLE, json.dumps(asdict(rec)).encode())
    return rec


async def ensure(js: Any, role: str, node: str) -> RoleRecord:
    """The record, written from the setting at epoch 0 when there is none yet."""
    rec = await read(js)
    if rec is None:
        rec = await write(js, role, 0, node)
    return rec


async def read_beat(js: Any) -> StoreBeat | None:
    value = await _get(js, KEY_STORE)
    if value is None:
        return None
    return StoreBeat(bool(value["consuming"]), int(value["epoch"]), float(value["at"]))


async def write_beat(js: Any, consuming: bool, epoch: int) -> None:
    beat = StoreBeat(consuming, epoch, time.time())
    await (await bucket(js)).put(KEY_STORE, json.dumps(asdict(beat)).encode())


def reconcile(own: RoleRecord, peer: RoleRecord | None) -> RoleRecord | None:
    """The record this side must take after comparing with the peer's, or None (keep).

    Only a demotion is learnt from the peer: a peer that is master at a higher epoch
    makes this side slave at that epoch (it missed the promote: down, or its NATS
    unreachable). A peer that is *slave* at a higher epoch is a promote of this side in
    progress — ``mailctl mirror promote`` demotes the peer first, waits until it has
    stopped delivering and everything it committed is here, and only then writes this
    side's master record. Taking master on seeing the peer's demotion would skip those
    waits: both stores would deliver at once, with clashing UIDs. (A promote that died
    between its two writes leaves both sides slave: no mail is lost, it waits on NATS
    until the promote is run again.) Equal epochs are left alone (both masters at one
    epoch is a configuration error, reported by the mirror's status, not guessed at)."""
    if peer is None or peer.epoch <= own.epoch or peer.role != MASTER:
        return None
    return RoleRecord(SLAVE, peer.epoch, own.node, time.time())


__all__ = [
    "KV_ROLE",
    "MASTER",
    "SLAVE",
    "RoleRecord",
    "StoreBeat",
    "bucket",
    "ensure",
    "other",
    "read",
    "read_beat",
    "reconcile",
    "write",
    "write_beat",
]
