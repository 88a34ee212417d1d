"""The store's replica requests, answered for its own mirror process (services/mirror).

Only the store process opens its data directory (an exclusive lock), so the mirror reads
the journal, confirms its reader position and applies the peer's records by request/reply
on the store's local NATS (``postern.replica.<op>``). Requests and replies are JSON,
except ``apply``, whose record travels in a header and whose message bytes are the
payload (or, above 512 KiB, an object of ``MIRROR_BODIES`` the mirror put there).

* ``accounts`` → ``{"accounts": [...]}``
* ``read`` ``{account, reader, origin, limit}`` → ``{"records": [row...], "last": seq}``:
  the reader (``mirror:<peer>``) is registered at 0 the first time; records the store
  applied from ``origin`` are left out (loop prevention); ``{"resync": true}`` when the
  reader must resync
* ``confirm`` ``{account, reader, seq}`` → ``{"ok": true}``
* ``body`` ``{account, file_id}`` → the bytes inline, header ``Postern-Mirror-Body``
  ``inline``; ``object:<name>`` above 512 KiB (put in ``MIRROR_BODIES``); ``none`` when
  every copy was expunged since (``object``: the object's name, for a resync)
* ``bodies`` ``{account, file_ids}`` → several at once, as the source ships a batch: a
  JSON line ``[[how, length], ...]`` (``how`` as ``body``'s header), then the inline
  bytes one after the other; the source asks for at most 768 KiB of inline bytes a time
* ``apply`` (headers account, record, body; payload) → ``{"applied": bool}`` or
  ``{"conflict": text, "mailbox_id", "uid"}``; with header ``Postern-Mirror-Resolve``
  (``resolver``/``defer``) split-brain collisions are settled instead
  (mailcore/mailstore/splitbrain.py) and ``"resolved": [[kind, text], ...]`` says how
* ``apply_batch`` (several records and their bodies, mailcore/bus/replica_batch.py) →
  ``{"results": [...]}``, group-committed (replica_batch.py): what the sink uses; each
  record may carry the split-brain part and the Trash flag of ``apply``'s headers
* ``reset`` ``{account, reader}`` → ``{"ok": true, "head"}``: the reader starts again at 0
  (``mailctl mirror resync``); ``{"pruned": first}`` when the journal no longer starts at 1
* ``digest`` ``{account, mailbox_id, first?, last?}`` and ``mailboxes`` ``{account}``
  for resync-fast; ``state``, ``uids``, ``restart`` and ``force``: services/store/repair_rpc.py

A request about an account this store does not hold creates nothing (MailStore.existing):
the questions are answered as for an account with nothing in it (``mailboxes`` none,
``read`` no records, ``digest`` an error: no such mailbox), and records create an account
only when they begin with its INBOX's creation, in one transaction with it
(MailStore.replica_account): a replica account is complete or not there at all.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.logging import get_logger
from mailcore.mailstore import MailStore, ReplicaConflict, ResyncRequired, UnknownReader, journal
from mailcore.mailstore.records import AccountRemovedRecord
from services.store import repair_rpc, replica_batch
from services.store.repair_rpc import mirror_bodies, reply_json

log = get_logger("replica")

INLINE_MAX = 512 * 1024  # larger bodies go through the Object Store
Handler = Callable[[Any], Awaitable[tuple[bytes, dict[str, str] | None]]]


def handlers(
    bus: Bus, store: MailStore, on_mirror: Callable[[], None] = lambda: None
) -> dict[str, Handler]:
    """``on_mirror`` is called by every ``accounts`` and ``read``: a mirror is reading
    this store's journal (services/store/mirror_changed.py starts its notices then)."""

    async def accounts(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        on_mirror()
        root = store.root / "accounts"
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
        return reply_json({"accounts": found})

    # Readers known to be registered: registering is a durable write (a commit and an
    # fsync), and the mirror's source reads every account several times a second.
    registered: set[tuple[str, str]] = set()

    async def read(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        on_mirror()
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        if acct is None:
            return reply_json({"records": [], "last": 0, "generation": 0.0})
        rep = acct.replication
        key = (req["account"], req["reader"])
        limit = int(req.get("limit", 500))
        try:
            if key not in registered:
                await rep.register_reader(req["reader"], position=0)
                registered.add(key)
            try:
                records, last = await rep.read_skipping(req["reader"], req["origin"], limit)
            except UnknownReader:  # the account was removed and made anew since
                registered.discard(key)
                await rep.register_reader(req["reader"], position=0)
                registered.add(key)
                records, last = await rep.read_skipping(req["reader"], req["origin"], limit)
        except ResyncRequired:
            return reply_json({"resync": True})
        generation = 0.0  # when the reader last confirmed or was reset: part of the
        if records:  # records' dedup ids: a resync is not taken for duplicates
            mine = [p for p in await rep.readers() if p.name == req["reader"]]
            generation = mine[0].confirmed_at if mine else 0.0
        return reply_json(
            {
                "records": [journal.encode(r) for r in records],
                "last": last,
                "generation": generation,
            }
        )

    async def confirm(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        if acct is not None:
            await acct.replication.confirm(req["reader"], int(req["seq"]))
        return reply_json({"ok": True})

    async def body_of(account: str, file_id: int, name: str | None) -> tuple[str, bytes]:
        """(how, bytes): ``inline`` and the bytes, ``object:<name>`` or ``none``."""
        acct = await store.existing(account)
        data = None if acct is None else acct.replication.message_bytes(file_id)
        if data is None:
            return "none", b""
        if len(data) <= INLINE_MAX:
            return "inline", data
        name = name or f"{account}.{file_id}"
        await (await mirror_bodies(bus)).put(name, data)
        return f"object:{name}", b""

    async def body(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        how, data = await body_of(req["account"], int(req["file_id"]), req.get("object"))
        return data, {names.HDR_MIRROR_BODY: how}

    async def bodies(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        found = [await body_of(req["account"], int(f), None) for f in req["file_ids"]]
        index = json.dumps([[how, len(data)] for how, data in found]).encode()
        return index + b"\n" + b"".join(data for _, data in found), None

    async def apply(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        hdrs = msg.headers or {}
        account = hdrs[names.HDR_MIRROR_ACCOUNT]
        rec = journal.decode(tuple(json.loads(hdrs[names.HDR_MIRROR_RECORD])))
        if isinstance(rec, AccountRemovedRecord):
            await store.remove_account(account)
            return reply_json({"applied": True})
        how = hdrs.get(names.HDR_MIRROR_BODY, "none")
        data: bytes | None = None
        if how == "inline":
            data = bytes(msg.data)
        elif how.startswith("object:"):
            obj = await (await mirror_bodies(bus)).get(how.removeprefix("object:"))
            data = obj.data
        resolve = hdrs.get(names.HDR_MIRROR_RESOLVE)
        origin = hdrs.get(names.HDR_MIRROR_ORIGIN)
        try:
            acct, applied = await store.replica_account(account, rec, origin=origin)
            if applied:  # it created the account (its INBOX)
                return reply_json({"applied": True})
            if resolve is not None and origin is not None:  # split brain settled here
                res = await acct.replication.apply_resolving(
                    rec,
                    data,
                    origin=origin,
                    resolver=resolve == "resolver",
                    trash=hdrs.get(names.HDR_MIRROR_TRASH) == "1",
                )
                return reply_json({"applied": res.applied, "resolved": res.notes})
            applied = await acct.replication.apply(rec, data, origin=origin)
        except ReplicaConflict as exc:
            return reply_json({"conflict": str(exc), "mailbox_id": exc.mailbox_id, "uid": exc.uid})
        return reply_json({"applied": applied})

    async def apply_batch(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        async def body_of(name: str) -> bytes:
            obj = await (await mirror_bodies(bus)).get(name)
            return bytes(obj.data or b"")

        results = await replica_batch.apply_batch(store, bytes(msg.data), body_of)
        return replica_batch.reply(results), None

    async def reset(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        """Ship the account's journal to the reader's peer again from the start
        (``mailctl mirror resync``): possible while the journal still holds record 1."""
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        if acct is None:
            return reply_json({"ok": True, "head": 0})
        rep = acct.replication
        first = await rep.first_kept()
        if first is not None and first > 1:
            return reply_json({"pruned": first})
        await rep.forget_origin(req["reader"].removeprefix("mirror:"))  # its own, too
        await rep.register_reader(req["reader"], position=0, reset=True)
        return reply_json({"ok": True, "head": rep.head})

    async def mailboxes_of(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        boxes = [] if acct is None else await acct.list_mailboxes()
        return reply_json({"mailboxes": [{"id": b.id, "name": b.name} for b in boxes]})

    async def digest(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        if acct is None:
            return reply_json({"error": f"digest: no account {req['account']} here"})
        rep = acct.replication
        if "first" in req:
            r = await rep.range_digest(int(req["mailbox_id"]), int(req["first"]), int(req["last"]))
            return reply_json({"count": r.messages, "digest": r.digest})
        d = await rep.digest(int(req["mailbox_id"]))
        return reply_json({"digest": d.digest, "uidnext": d.uidnext})

    return {
        "accounts": accounts,
        "read": read,
        "confirm": confirm,
        "body": body,
        "bodies": bodies,
        "apply": apply,
        "apply_batch": apply_batch,
        "reset": reset,
        "mailboxes": mailboxes_of,
        "digest": digest,
    }


async def serve_replica(
    bus: Bus, store: MailStore, on_mirror: Callable[[], None] = lambda: None
) -> list[Any]:
    """Subscribe every ``postern.replica.<op>``; returns the subscriptions."""
    subs = []
    every = {**handlers(bus, store, on_mirror), **repair_rpc.handlers(bus, store)}
    for op, handler in every.items():

        async def on_request(msg: Any, handler: Handler = handler, op: str = op) -> None:
            try:
                data, headers = await handler(msg)
            except Exception as exc:
                log.exception("replica request failed", op=op)
                data, headers = reply_json({"error": f"{op} failed: {type(exc).__name__}"})
            await bus.nc.publish(msg.reply, data, headers=headers)

        subs.append(await bus.nc.subscribe(names.SUBJECT_REPLICA + op, cb=on_request))
    return subs


__all__ = ["INLINE_MAX", "handlers", "serve_replica"]
