"""The store's resync requests: what ``mailctl mirror resync*`` and the repair pass
(services/mirror/resync.py) ask of a store, on that store's own NATS.

The resync tool holds connections to both stores' NATS and asks each the same questions:

* ``state`` ``{account}`` → the mailboxes (id, name, special use, UIDVALIDITY, UIDNEXT,
  HIGHESTMODSEQ, message count, digest), the subscriptions, the quota, the journal head
* ``uids`` ``{account, mailbox_id, first, last}`` → ``{"rows": [[uid, sha256, flags,
  modseq, internal date, size, file id, saved]...]}``
* ``restart`` ``{account, reader}`` → ``{"head"}``: the reader ``mirror:<peer>`` moves to
  the journal's head (what is before it is about to be copied as a snapshot)
* ``force``: header ``Postern-Mirror-Repair`` (JSON ``{op, account, origin, ...}``),
  payload the message bytes for ``append`` (or header ``Postern-Mirror-Body``
  ``object:<name>``: an object of this store's ``MIRROR_BODIES``, deleted once applied)
  → ``{"changed": n}``. Ops: ``mailbox``, ``drop``, ``flags``, ``expunge``, ``append``,
  ``subscriptions``, ``quota`` (mailcore/mailstore/repair.py, forced replica apply).

An account this store does not hold is never created by a question: ``state`` answers
as for an empty account, ``uids`` with no rows, ``restart`` with head 0. A forced
``mailbox`` creates a missing account only for its INBOX, in one transaction with it
(MailStore.replica_account, so a resync sends INBOX first); other forced writes to a
missing account change nothing (``drop``, ``flags``, ``expunge``) or are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, astuple
from typing import Any

from mailcore.bus import mirror_buckets, names
from mailcore.bus.connect import Bus
from mailcore.mailstore import MailStore, ReplicaConflict
from mailcore.mailstore.records import AppendRecord
from mailcore.mailstore.repair import AccountState, MailboxState, Repair, creation

HDR_REPAIR = names.HDR_MIRROR_REPAIR
Handler = Callable[[Any], Awaitable[tuple[bytes, dict[str, str] | None]]]


def reply_json(value: object) -> tuple[bytes, None]:
    """A replica request's JSON answer, without headers."""
    return json.dumps(value).encode(), None


async def mirror_bodies(bus: Bus) -> Any:
    """The ``MIRROR_BODIES`` object store (large bodies of replica records), made if missing."""
    return await mirror_buckets.bodies(bus.js)


def append_record(account_fields: dict[str, Any]) -> AppendRecord:
    f = account_fields
    return AppendRecord(
        0,
        float(f["saved"]),
        int(f["mailbox_id"]),
        int(f["uidvalidity"]),
        int(f["uid"]),
        int(f["modseq"]),
        float(f["internal_date"]),
        int(f["size"]),
        str(f["sha256"]),
        0,
        frozenset(f["flags"]),
    )


def handlers(bus: Bus, store: MailStore) -> dict[str, Handler]:
    async def state(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        if acct is None:
            return reply_json(asdict(AccountState([], [], 0, 0, 0)))
        return reply_json(asdict(await Repair(acct, "").state()))

    async def uids(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        if acct is None:
            return reply_json({"rows": []})
        rows = await Repair(acct, "").uid_rows(
            int(req["mailbox_id"]), int(req["first"]), int(req["last"])
        )
        return reply_json(
            {"rows": [[*astuple(r)[:2], sorted(r.flags), *astuple(r)[3:]] for r in rows]}
        )

    async def restart(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        req = json.loads(msg.data)
        acct = await store.existing(req["account"])
        if acct is None:
            return reply_json({"head": 0})
        pos = await acct.replication.register_reader(req["reader"], None, reset=True)
        return reply_json({"head": pos.position})

    async def force(msg: Any) -> tuple[bytes, dict[str, str] | None]:
        hdrs = msg.headers or {}
        req = json.loads(hdrs[HDR_REPAIR])
        op = req["op"]
        if op == "mailbox":
            box = MailboxState(**req["mailbox"])
            try:
                acct, created = await store.replica_account(
                    req["account"], creation(box, time.time()), origin=req["origin"]
                )
            except ReplicaConflict as exc:
                return reply_json({"error": str(exc)})
            synced = await Repair(acct, req["origin"]).mailbox(box)
            return reply_json({"changed": int(created or synced)})
        found = await store.existing(req["account"])
        if found is None:  # nothing to drop, flag or expunge; nowhere to put the rest
            if op in ("drop", "flags", "expunge"):
                return reply_json({"changed": 0})
            return reply_json({"error": f"{op}: no account {req['account']} here"})
        rep = Repair(found, req["origin"])
        changed: int
        if op == "drop":
            changed = int(await rep.drop(int(req["mailbox_id"]), int(req["modseq"])))
        elif op == "flags":
            changed = int(
                await rep.flags(
                    int(req["mailbox_id"]),
                    int(req["uid"]),
                    int(req["modseq"]),
                    frozenset(req["flags"]),
                )
            )
        elif op == "expunge":
            changed = await rep.expunge(
                int(req["mailbox_id"]), [int(u) for u in req["uids"]], int(req["modseq"])
            )
        elif op == "append":
            how = hdrs.get(names.HDR_MIRROR_BODY, "inline")
            if how.startswith("object:"):
                objects = await mirror_bodies(bus)
                data = (await objects.get(how.removeprefix("object:"))).data
                changed = int(await rep.append(append_record(req), data))
                await objects.delete(how.removeprefix("object:"))
            else:
                changed = int(await rep.append(append_record(req), bytes(msg.data)))
        elif op == "subscriptions":
            changed = await rep.subscriptions([str(n) for n in req["names"]])
        elif op == "quota":
            changed = int(await rep.quota(int(req["bytes"]), int(req["messages"])))
        else:
            return reply_json({"error": f"unknown repair op {op!r}"})
        return reply_json({"changed": changed})

    return {"state": state, "uids": uids, "restart": restart, "force": force}


__all__ = ["HDR_REPAIR", "append_record", "handlers"]
