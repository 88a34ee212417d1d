"""``postern.replica.apply_batch``: the peer's records, several per request, applied in
order and group-committed (wire form: mailcore/bus/replica_batch.py).

Each record goes through the same replica apply as ``apply`` (replica_rpc.py). The
applies of one request are handed to the account's writer thread back to back, in
order, before any is awaited, so the writer runs them as one group: one transaction,
each record in a savepoint of its own (a refused record rolls back alone), one commit
and one sync of the new message files for all (docs/storage.md, group commit). An
account removal ends a group: what came before it is committed first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from mailcore.bus import replica_batch
from mailcore.bus.replica_batch import BatchEntry
from mailcore.mailstore import MailStore, ReplicaConflict, journal
from mailcore.mailstore.account import Account
from mailcore.mailstore.records import AccountRemovedRecord, Record
from mailcore.mailstore.splitbrain import Resolution

Bodies = Callable[[str], Awaitable[bytes]]  # an object of MIRROR_BODIES by name


def _result(outcome: bool | Resolution | BaseException) -> dict[str, Any]:
    if isinstance(outcome, Resolution):  # split brain settled (splitbrain.py)
        return {"applied": outcome.applied, "resolved": outcome.notes}
    if isinstance(outcome, ReplicaConflict):
        return {"conflict": str(outcome), "mailbox_id": outcome.mailbox_id, "uid": outcome.uid}
    if isinstance(outcome, BaseException):
        return {"error": f"apply failed: {type(outcome).__name__}"}
    return {"applied": outcome}


def _apply(
    acct: Account, e: BatchEntry, rec: Record, data: bytes | None
) -> Awaitable[bool | Resolution]:
    """One record, as the ``apply`` request would: settling split-brain collisions when the
    sink asks for it. Either is one job of the account's writer (group-committed)."""
    if e.resolve is not None and e.origin is not None:
        return acct.replication.apply_resolving(
            rec, data, origin=e.origin, resolver=e.resolve == "resolver", trash=e.trash
        )
    return acct.replication.apply(rec, data, origin=e.origin)


async def apply_batch(store: MailStore, payload: bytes, bodies: Bodies) -> list[dict[str, Any]]:
    entries = replica_batch.decode(payload)
    results: list[dict[str, Any]] = []
    group: list[tuple[BatchEntry, Record, bytes | None]] = []

    async def flush() -> bool:
        """Apply the group; False once a record failed (the rest is not attempted)."""
        if not group:
            return True
        # each account's first record here opens it, or creates a missing one when it
        # is the creation of its INBOX (a replica account is complete or not there)
        accounts: dict[str, Account | ReplicaConflict] = {}
        done: dict[int, bool | Resolution | BaseException] = {}
        for i, (e, rec, _) in enumerate(group):
            if e.account in accounts:
                continue
            try:
                acct, applied = await store.replica_account(e.account, rec, origin=e.origin)
            except ReplicaConflict as exc:
                accounts[e.account] = exc
                continue
            accounts[e.account] = acct
            if applied:
                done[i] = True
        # Submitted in order within one step of the event loop: the writer queues them
        # back to back and commits them as one group.
        futures = {}
        for i, (e, rec, data) in enumerate(group):
            target = accounts[e.account]
            if isinstance(target, ReplicaConflict):
                done[i] = target  # no account for it here: kept as a conflict
            elif i not in done:
                futures[i] = asyncio.ensure_future(_apply(target, e, rec, data))
        outcomes = await asyncio.gather(*futures.values(), return_exceptions=True)
        done.update(zip(futures, outcomes, strict=True))
        group.clear()
        for i in sorted(done):
            results.append(_result(done[i]))
            if "error" in results[-1]:
                return False
        return True

    for entry in entries:
        rec = journal.decode(tuple(entry.row))
        if isinstance(rec, AccountRemovedRecord):
            if not await flush():
                break
            try:
                await store.remove_account(entry.account)
                results.append({"applied": True})
            except Exception as exc:
                results.append(_result(exc))
                break
            continue
        data: bytes | None = None
        if entry.body == "inline":
            data = entry.data
        elif entry.body.startswith("object:"):
            data = await bodies(entry.body.removeprefix("object:"))
        group.append((entry, rec, data))
    else:
        await flush()
    return results


def reply(results: list[dict[str, Any]]) -> bytes:
    return json.dumps({"results": results}).encode()


__all__ = ["apply_batch", "reply"]
