"""Resync: make the peer store equal to this one, account by account (docs/mirror.md).

Used by ``mailctl mirror resync`` (full copy to a new or wiped peer), ``resync-fast``,
``resync-mkdir`` and the mirror's scheduled repair pass (services/mirror/repair.py). It holds a NATS
connection to each store and asks both the same questions (services/store/repair_rpc.py
and replica_rpc.py), then makes the peer's state this store's with forced replica apply
(mailcore/mailstore/repair.py):

1. **Folders**: the peer's mailboxes this store lacks are dropped; each of this store's
   is created (or renamed, or recreated when its UIDVALIDITY differs) there with the same
   id, UIDVALIDITY and UIDNEXT (INBOX first: an account the peer lacks is created by
   its INBOX, complete, never empty); subscriptions and quota are set.
2. **Messages** (not for ``mkdir``): per mailbox, equal digests end it; otherwise the UID
   range is bisected on range digests (count + XOR of per-message hashes) until a range
   holds at most :data:`LEAF` messages, whose rows are compared: a message the peer lacks
   (or holds different bytes under the UID) is copied with its UID, modseq, flags and
   dates; flags that differ are forced with this store's modseq, older or not; a message
   only the peer has is expunged there when its UID is below this store's UIDNEXT (this
   store expunged it), and copied *back* here when it is not (mail the journal never
   brought: it is not thrown away).

Forced writes are journalled on the written store with the other store as origin, so no
mirror ships them back. A full resync first moves the reader ``mirror:<peer>`` to the
journal's head: the snapshot copy covers what is before it, the live mirror what follows,
so a journal pruned past what the peer has is no obstacle. Progress goes to the KV
bucket ``MIRROR_STATUS`` (key ``resync.<peer>``) as it moves; a run that stopped half-way
(killed, link lost) is resumed by the next run of the same kind: accounts finished are
skipped, and in the account it was in, everything copied compares equal and is skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from nats import errors as nats_errors

from mailcore.bus import mirror as queue
from mailcore.bus import mirror_buckets, names
from mailcore.logging import get_logger

log = get_logger("mirror")

INLINE_MAX = 512 * 1024  # larger bodies go through MIRROR_BODIES (as replica apply's)
LEAF = 256  # messages in a range compared row by row
COPIES = 16  # messages copied at once
REQUEST_TIMEOUT = 60.0
KINDS = ("full", "fast", "mkdir")


class ResyncError(Exception):
    """A store did not answer, or refused."""


@dataclass
class Fixes:
    added: int = 0  # messages the peer lacked (or held other bytes under the UID)
    returned: int = 0  # messages only the peer had, above this store's UIDNEXT: copied here
    removed: int = 0  # messages only the peer had, expunged here: expunged there
    flags: int = 0  # flags (and modseq) forced
    mailboxes: int = 0  # folders created, renamed, recreated or dropped on the peer
    subscriptions: int = 0
    quota: int = 0

    @property
    def messages(self) -> int:
        return self.added + self.returned + self.removed + self.flags

    def add(self, other: dict[str, int]) -> None:
        for key, value in other.items():
            setattr(self, key, getattr(self, key) + int(value))


@dataclass
class Progress:
    kind: str
    peer: str
    state: str = "running"  # running, done, failed
    accounts_total: int = 0
    accounts_done: int = 0
    last_done: str | None = None  # accounts go in name order: a resumed run skips to after it
    account: str | None = None
    messages_total: int = 0
    messages_done: int = 0
    fixes: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None


def status_key(peer: str) -> str:
    return f"resync.{peer}"


class StoreLink:
    """One store's replica requests over a NATS connection (``url``: that NATS, named in
    errors)."""

    def __init__(self, nc: Any, js: Any, name: str, url: str = "") -> None:
        self.nc, self.js, self.name = nc, js, name
        self.url = url

    def failure(self, op: str, exc: BaseException) -> ResyncError:
        """One line saying what is unreachable: the store (its NATS answers, no replica
        service listens: stopped or starting), or its NATS (the connection is gone)."""
        on = f" on {self.url}" if self.url else ""
        if isinstance(exc, nats_errors.NoRespondersError):
            return ResyncError(f"store {self.name} is not answering{on}: is it running?")
        if isinstance(exc, TimeoutError):
            return ResyncError(
                f"store {self.name} did not answer {op} within {REQUEST_TIMEOUT:.0f}s{on}"
            )
        if isinstance(exc, (nats_errors.ConnectionClosedError, nats_errors.StaleConnectionError,
                            nats_errors.ConnectionReconnectingError, OSError)):  # fmt: skip
            return ResyncError(f"lost the NATS of store {self.name}{on}")
        return ResyncError(f"store {self.name}: {op}: {type(exc).__name__}")

    async def ask(
        self,
        op: str,
        body: dict[str, Any] | None = None,
        *,
        payload: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        data = payload if payload is not None else json.dumps(body or {}).encode()
        try:
            reply = await self.nc.request(
                names.SUBJECT_REPLICA + op, data, timeout=REQUEST_TIMEOUT, headers=headers
            )
        except Exception as exc:
            raise self.failure(op, exc) from exc
        return reply

    async def json(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        value: dict[str, Any] = json.loads((await self.ask(op, body)).data)
        if "error" in value:
            raise ResyncError(f"store {self.name}: {value['error']}")
        return value

    async def force(self, account: str, origin: str, op: str, **fields: Any) -> int:
        hdr = {
            names.HDR_MIRROR_REPAIR: json.dumps(
                {"op": op, "account": account, "origin": origin, **fields}
            )
        }
        value = json.loads((await self.ask("force", payload=b"", headers=hdr)).data)
        if "error" in value:
            raise ResyncError(f"store {self.name}: {value['error']}")
        return int(value["changed"])

    async def bodies(self) -> Any:
        return await mirror_buckets.bodies(self.js)

    async def read_body(self, account: str, file_id: int) -> bytes | None:
        """The stored bytes (None: expunged meanwhile)."""
        name = f"resync.{account}.{file_id}"
        reply = await self.ask("body", {"account": account, "file_id": file_id, "object": name})
        how = (reply.headers or {}).get(names.HDR_MIRROR_BODY, "none")
        if how == "none":
            return None
        if how == "inline":
            return bytes(reply.data)
        objects = await self.bodies()
        data: bytes = (await objects.get(name)).data
        await objects.delete(name)
        return data

    async def append(self, account: str, origin: str, fields: dict[str, Any], data: bytes) -> int:
        what = {"op": "append", "account": account, "origin": origin, **fields}
        hdr = {names.HDR_MIRROR_REPAIR: json.dumps(what)}
        if len(data) > INLINE_MAX:  # through this store's MIRROR_BODIES, which it deletes
            name = f"resync.{account}.{fields['mailbox_id']}.{fields['uid']}"
            await (await self.bodies()).put(name, data)
            hdr[names.HDR_MIRROR_BODY] = f"object:{name}"
            data = b""
        value = json.loads((await self.ask("force", payload=data, headers=hdr)).data)
        if "error" in value:
            raise ResyncError(f"store {self.name}: {value['error']}")
        return int(value["changed"])


Copy = tuple[StoreLink, StoreLink, list[Any], str]  # from, to, uid row, kind of fix


def _rows(reply: dict[str, Any]) -> dict[int, list[Any]]:
    return {int(r[0]): r for r in reply["rows"]}


class Resync:
    """Make ``peer``'s accounts equal to ``local``'s (see the module docstring)."""

    def __init__(
        self,
        local: StoreLink,
        peer: StoreLink,
        node: str,
        peer_name: str,
        *,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.local, self.peer = local, peer
        self.node, self.peer_name = node, peer_name
        self.on_progress = on_progress
        self.progress = Progress(kind="fast", peer=peer_name)
        self.fixes = Fixes()

    # --- the run ---------------------------------------------------------------------------
    async def run(self, kind: str, *, resume: bool = True) -> Progress:
        if kind not in KINDS:
            raise ValueError(f"unknown resync kind {kind!r}")
        accounts = sorted((await self.local.json("accounts", {}))["accounts"])
        before = await queue.read_status(self.local.js, status_key(self.peer_name))
        unfinished = before.get("kind") == kind and before.get("state") in ("running", "failed")
        last_done: str | None = None
        if resume and unfinished:
            last_done = before.get("last_done")
            self.fixes.add(before.get("fixes", {}))
        done = {a for a in accounts if last_done is not None and a <= last_done}
        self.progress = Progress(
            kind=kind,
            peer=self.peer_name,
            accounts_total=len(accounts),
            accounts_done=len(done),
            last_done=last_done,
            resumed=resume and unfinished,
        )
        states = {}
        for account in accounts:
            states[account] = await self.local.json("state", {"account": account})
            total = sum(int(b["messages"]) for b in states[account]["mailboxes"])
            self.progress.messages_total += total
            if account in done:
                self.progress.messages_done += total
        await self._save()
        try:
            for account in accounts:
                if account in done:
                    continue
                self.progress.account = account
                await self.account(account, kind, states[account])
                self.progress.accounts_done += 1
                self.progress.last_done = account
                await self._save()
        except BaseException as exc:
            self.progress.error = f"{type(exc).__name__}: {exc}"[:300]
            if not isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                self.progress.state = "failed"
            await asyncio.shield(self._save())
            raise
        self.progress.state = "done"
        self.progress.account = None
        self.progress.finished_at = time.time()
        await self._save()
        return self.progress

    async def _save(self) -> None:
        self.progress.updated_at = time.time()
        self.progress.fixes = {k: v for k, v in asdict(self.fixes).items() if v}
        await queue.write_status(self.local.js, status_key(self.peer_name), asdict(self.progress))
        if self.on_progress is not None:  # after the record: the meter is never ahead of it
            self.on_progress(self.progress)

    async def _tick(self, messages: int) -> None:
        """A range is done: its messages count, and the record is saved (what a resumed run
        and ``mailctl mirror status`` see is never behind the meter)."""
        self.progress.messages_done += messages
        await self._save()

    # --- one account -----------------------------------------------------------------------
    async def account(self, account: str, kind: str, mine: dict[str, Any] | None = None) -> None:
        if kind == "full":  # the live mirror carries on from the journal's head
            await self.local.json(
                "restart", {"account": account, "reader": f"mirror:{self.peer_name}"}
            )
        if mine is None or kind == "full":
            mine = await self.local.json("state", {"account": account})
        theirs = await self.peer.json("state", {"account": account})
        await self._folders(account, mine, theirs)
        if kind == "mkdir":
            return
        theirs = await self.peer.json("state", {"account": account})
        peer_boxes = {int(b["id"]): b for b in theirs["mailboxes"]}
        for box in mine["mailboxes"]:
            other = peer_boxes.get(int(box["id"]))
            if other is not None and other["digest"] == box["digest"]:
                await self._tick(int(box["messages"]))
                continue
            top = max(int(box["uidnext"]), int(other["uidnext"]) if other else 0)
            await self._range(account, box, 1, max(1, top - 1))

    async def _folders(self, account: str, mine: dict[str, Any], theirs: dict[str, Any]) -> None:
        peer, origin = self.peer, self.node
        ours = {int(b["id"]): b for b in mine["mailboxes"]}
        for box in theirs["mailboxes"]:
            if int(box["id"]) not in ours:
                modseq = int(box["highestmodseq"])
                n = await peer.force(account, origin, "drop", mailbox_id=box["id"], modseq=modseq)
                self.fixes.mailboxes += n
        held = {int(b["id"]): b for b in theirs["mailboxes"]}
        # INBOX first: only its creation may create the account on the peer
        for box in sorted(mine["mailboxes"], key=lambda b: str(b["name"]).upper() != "INBOX"):
            other = held.get(int(box["id"]))
            same = other is not None and all(
                other[k] == box[k] for k in ("name", "uidvalidity", "special_use")
            )
            if same and other is not None and int(other["uidnext"]) >= int(box["uidnext"]):
                continue
            self.fixes.mailboxes += await peer.force(account, origin, "mailbox", mailbox=box)
        if sorted(mine["subscriptions"]) != sorted(theirs["subscriptions"]):
            n = await peer.force(account, origin, "subscriptions", names=mine["subscriptions"])
            self.fixes.subscriptions += n
        quota = (mine["quota_bytes"], mine["quota_messages"])
        if quota != (theirs["quota_bytes"], theirs["quota_messages"]):
            n = await peer.force(account, origin, "quota", bytes=quota[0], messages=quota[1])
            self.fixes.quota += n

    async def _range(self, account: str, box: dict[str, Any], first: int, last: int) -> None:
        ask = {"account": account, "mailbox_id": box["id"], "first": first, "last": last}
        mine = await self.local.json("digest", ask)
        theirs = await self.peer.json("digest", ask)
        if mine == theirs:
            await self._tick(int(mine["count"]))
            return
        if first == last or max(int(mine["count"]), int(theirs["count"])) <= LEAF:
            await self._leaf(account, box, first, last)
            return
        mid = (first + last) // 2
        await self._range(account, box, first, mid)
        await self._range(account, box, mid + 1, last)

    async def _leaf(self, account: str, box: dict[str, Any], first: int, last: int) -> None:
        ask = {"account": account, "mailbox_id": box["id"], "first": first, "last": last}
        mine = _rows(await self.local.json("uids", ask))
        theirs = _rows(await self.peer.json("uids", ask))
        copies: list[Copy] = []
        gone: list[int] = []
        for uid, row in mine.items():
            other = theirs.get(uid)
            if other is None or other[1] != row[1]:
                copies.append((self.local, self.peer, row, "added"))
            elif sorted(other[2]) != sorted(row[2]) or int(other[3]) != int(row[3]):
                changed = await self.peer.force(
                    account, self.node, "flags", mailbox_id=box["id"], uid=uid,
                    modseq=row[3], flags=row[2],
                )  # fmt: skip
                if changed and sorted(other[2]) != sorted(row[2]):
                    self.fixes.flags += 1
        for uid in theirs:
            if uid in mine:
                continue
            if uid >= int(box["uidnext"]):  # never seen here: keep it, on both sides
                copies.append((self.peer, self.local, theirs[uid], "returned"))
            else:
                gone.append(uid)
        if gone:
            self.fixes.removed += await self.peer.force(
                account, self.node, "expunge", mailbox_id=box["id"], uids=gone,
                modseq=box["highestmodseq"],
            )  # fmt: skip
        for i in range(0, len(copies), COPIES):
            chunk = copies[i : i + COPIES]
            await asyncio.gather(*(self._copy(account, box, c) for c in chunk))
        await self._tick(len(mine))

    async def _copy(self, account: str, box: dict[str, Any], copy: Copy) -> None:
        src, dst, row, kind = copy
        uid, sha, flags, modseq, internal_date, size, file_id, saved = row
        data = await src.read_body(account, int(file_id))
        if data is None:  # expunged there meanwhile
            return
        origin = self.node if dst is self.peer else self.peer_name
        fields = {
            "mailbox_id": box["id"], "uidvalidity": box["uidvalidity"], "uid": uid,
            "modseq": modseq, "internal_date": internal_date, "size": size,
            "sha256": sha, "flags": flags, "saved": saved,
        }  # fmt: skip
        if await dst.append(account, origin, fields, data):
            setattr(self.fixes, kind, getattr(self.fixes, kind) + 1)


async def queues_empty(local_js: Any, peer_js: Any, node: str, peer: str) -> bool:
    """Nothing waits for replication either way (a resync-fast compares settled state)."""
    mine, _ = await queue.queue(local_js, peer)
    theirs, _ = await queue.queue(peer_js, node)
    return mine == 0 and theirs == 0


__all__ = [
    "KINDS",
    "LEAF",
    "Fixes",
    "Progress",
    "Resync",
    "ResyncError",
    "StoreLink",
    "queues_empty",
    "status_key",
]
