"""The store's replica requests over a real nats-server: the mirror's reader is
registered once (a durable write) and found again after someone removed it; a replica
account is created complete (with its INBOX) or not at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mailcore.bus import names, replica_batch
from mailcore.bus.connect import Bus
from mailcore.bus.replica_batch import BatchEntry
from mailcore.mailstore import Delivery, MailStore, journal
from mailcore.mailstore.records import AppendRecord
from services.store.replica_rpc import serve_replica
from tests.mailcore.mailstore.conftest import message

READER = "mirror:store-b"


async def _ask(bus: Bus, op: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await bus.nc.request(names.SUBJECT_REPLICA + op, json.dumps(body).encode(), 30)
    value: dict[str, Any] = json.loads(reply.data)
    return value


async def test_read_registers_once_and_again_after_removal(bus: Bus, tmp_path: Path) -> None:
    store = await MailStore.open(tmp_path / "store")
    subs = await serve_replica(bus, store)
    try:
        acct = await store.account("acct-1")
        inbox = await acct.mailbox("INBOX")
        await acct.append(inbox.id, message("one"))
        ask = {"account": "acct-1", "reader": READER, "origin": "store-b", "limit": 500}
        first = await _ask(bus, "read", ask)
        assert first["records"] and first["last"] == acct.replication.head
        assert (await _ask(bus, "confirm", {**ask, "seq": first["last"]})) == {"ok": True}
        assert (await _ask(bus, "read", ask))["records"] == []
        # a reader removed behind the handler's back is registered anew (at record 0)
        await acct.replication.unregister_reader(READER)
        again = await _ask(bus, "read", ask)
        assert [r[0] for r in again["records"]] == [r[0] for r in first["records"]]
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await store.close()


def _entries(records: list[Any], src: Any) -> list[BatchEntry]:
    out = []
    for rec in records:
        data = src.replication.message_bytes(rec.file_id) if isinstance(rec, AppendRecord) else b""
        out.append(
            BatchEntry("acct-1", journal.encode(rec), "inline" if data else "none", "store-a", data)
        )
    return out


async def _batch(bus: Bus, entries: list[BatchEntry]) -> list[dict[str, Any]]:
    reply = await bus.nc.request(
        names.SUBJECT_REPLICA + "apply_batch", replica_batch.encode(entries), 30
    )
    results: list[dict[str, Any]] = json.loads(reply.data)["results"]
    return results


async def test_a_replica_account_is_complete_or_not_there(bus: Bus, tmp_path: Path) -> None:
    """The peer's questions about an account this store lacks create nothing (before, they
    left an empty account without INBOX, where the next delivery failed); its records
    create it only with its INBOX, as delivery would have it."""
    primary = await MailStore.open(tmp_path / "a")
    store = await MailStore.open(tmp_path / "b")
    subs = await serve_replica(bus, store)
    try:
        # --- questions: answered as for an empty account, nothing created -------------
        assert await _ask(bus, "mailboxes", {"account": "acct-1"}) == {"mailboxes": []}
        assert "error" in await _ask(bus, "digest", {"account": "acct-1", "mailbox_id": 1})
        state = await _ask(bus, "state", {"account": "acct-1"})
        assert state["mailboxes"] == [] and state["head"] == 0
        ask = {"account": "acct-1", "mailbox_id": 1, "first": 1, "last": 9}
        assert await _ask(bus, "uids", ask) == {"rows": []}
        read = {"account": "acct-1", "reader": READER, "origin": "store-b", "limit": 500}
        assert (await _ask(bus, "read", read))["records"] == []
        assert await _ask(bus, "accounts", {}) == {"accounts": []}
        assert not store.account_dir("acct-1").exists()
        # a delivery now creates the account as always: INBOX and the default folders
        (result,) = await store.deliver(
            [Delivery("k1", "acct-1", "inbox", message("first"), 1.7e9)]
        )
        assert result.outcome == "delivered", result
        await store.remove_account("acct-1")
        # --- records not beginning with the INBOX's creation: kept as conflicts --------
        src = await primary.account("acct-1")
        await src.append((await src.mailbox("INBOX")).id, message("one"))
        entries = _entries(await src.replication.read(0), src)
        assert journal.decode(tuple(entries[0].row)).name == "INBOX"  # type: ignore[union-attr]
        results = await _batch(bus, entries[1:])
        assert results and all("not on this store" in r["conflict"] for r in results), results
        assert not (store.account_dir("acct-1") / "index.sqlite").exists()
        assert await _ask(bus, "accounts", {}) == {"accounts": []}
        force = {"op": "mailbox", "account": "acct-1", "origin": "store-a", "mailbox": {
            "id": 2, "name": "Sent", "special_use": "\\Sent", "uidvalidity": 2, "uidnext": 1,
            "highestmodseq": 1, "messages": 0, "digest": ""}}  # fmt: skip
        reply = await bus.nc.request(
            names.SUBJECT_REPLICA + "force", b"", 30, headers={names.HDR_MIRROR_REPAIR:
                                                               json.dumps(force)}
        )  # fmt: skip
        assert "error" in json.loads(reply.data)
        assert await _ask(bus, "accounts", {}) == {"accounts": []}
        # --- the whole journal: created with its INBOX, every record applied ------------
        results = await _batch(bus, entries)
        assert results == [{"applied": True}] * len(entries)
        dst = await store.existing("acct-1")
        assert dst is not None
        assert [b.name for b in await dst.list_mailboxes()] == [
            b.name for b in await src.list_mailboxes()
        ]
        assert await dst.replication.digest(1) == await src.replication.digest(1)
        # applied from store-a: none of it goes back there (the INBOX's creation included)
        await dst.replication.register_reader("mirror:store-a", position=0)
        records, _ = await dst.replication.read_skipping("mirror:store-a", "store-a", 500)
        assert records == []
    finally:
        for sub in subs:
            await sub.unsubscribe()
        await store.close()
        await primary.close()
