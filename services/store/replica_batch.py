"""``postern.replica.apply_batch``: the peer's records, several per request, applied in
order and group-committed (wire form: mailcore/bus/replica_batch.py).

Each record goes through the same replica apply as ``apply`` (replica_rpc.py). The
records of one request are handed to each account's writer thread as one write per
account (Replication.apply_many), all before any is awaited, so the writer commits them
as one group: one transaction, each record in a savepoint of its own (a refused record
rolls back alone) except runs of appends that collide with nothing, applied together
(mailcore/mailstore/replica_run.py), one commit and one sync of the new message files
for all (docs/storage.md, group commit). An account removal ends a group: what came
before it is committed first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

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


def _mode(e: BatchEntry) -> tuple[str | None, bool | None, bool]:
    """How a record is applied: (origin, split-brain role or None, Trash flag) — the
    ``apply`` request's headers (a role only with an origin)."""
    if e.resolve is not None and e.origin is not None:
        return e.origin, e.resolve == "resolver", e.trash
    return e.origin, None, False


def _apply_runs(
    accounts: dict[str, Account | ReplicaConflict],
    group: list[tuple[BatchEntry, Record, bytes | None]],
    skip: dict[int, bool | Resolution | BaseException],
) -> list[tuple[list[int], asyncio.Future[Any]]]:
    """The group's records, per account and way of applying, in order: each run one
    write of the account's writer (replication.apply_many), all submitted within one
    step of the event loop, so the writer commits them as one group."""
    runs: dict[tuple[str, str | None, bool | None, bool], list[int]] = {}
    order: list[list[int]] = []
    last: dict[str, tuple[str, str | None, bool | None, bool]] = {}
    for i, (e, _, _) in enumerate(group):
        if i in skip:
            continue
        key = (e.account, *_mode(e))
        if last.get(e.account) != key:  # a change of mode starts a new run
            runs[key] = []
            order.append(runs[key])
            last[e.account] = key
        runs[key].append(i)
    out: list[tuple[list[int], asyncio.Future[Any]]] = []
    for idxs in order:
        e = group[idxs[0]][0]
        acct = accounts[e.account]
        assert isinstance(acct, Account)
        origin, resolve, trash = _mode(e)
        items = [(group[i][1], group[i][2]) for i in idxs]
        fut = asyncio.ensure_future(
            acct.replication.apply_many(items, origin=origin, resolve=resolve, trash=trash)
        )
        out.append((idxs, fut))
    return out


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
        for i, (e, _, _) in enumerate(group):
            target = accounts[e.account]
            if isinstance(target, ReplicaConflict):
                done[i] = target  # no account for it here: kept as a conflict
        runs = _apply_runs(accounts, group, done)
        outcomes = await asyncio.gather(*(fut for _, fut in runs), return_exceptions=True)
        for (idxs, _), outcome in zip(runs, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # the write failed as a whole
                done.update((i, outcome) for i in idxs)
                continue
            for i, (result, failed) in zip(idxs, outcome, strict=True):
                done[i] = failed if failed is not None else cast(bool | Resolution, result)
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
