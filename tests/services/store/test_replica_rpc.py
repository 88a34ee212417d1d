"""The store's replica requests over a real nats-server: the mirror's reader is
registered once (a durable write) and found again after someone removed it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.mailstore import MailStore
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
