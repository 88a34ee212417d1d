"""A third store: a read-only follower fed from the master's journal (its own reader,
queue, lag and status line). 5,000 random operations spread over master and slave —
deliveries, APPENDs, flag changes and expunges, at once on both sides — and the three
stores converge: the same mailboxes, UIDs, flags and digests."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from mailcore.bus import mirror as queue
from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import contents, digests, mailctl, until
from tests.services.mirror.test_split_brain import ADDRESS, PASSWORD, Client, deliver, opened
from tests.services.mirror.test_sync_mode import SyncSide

pytestmark = pytest.mark.slow

OPERATIONS = 5000


async def operate(client: Client, bus: Bus, side: str, count: int, rng: random.Random) -> None:
    """``count`` random operations on one store."""
    uids: list[int] = []
    for i in range(count):
        if i % 250 == 0:
            uids = sorted(await client.listing())
        roll = rng.random()
        if roll < 0.35 or not uids:
            await deliver(bus, [f"{side}-d{i}"])
        elif roll < 0.45:
            await client.append("INBOX", f"{side}-a{i}")
        elif roll < 0.85:
            picked = ",".join(str(u) for u in rng.sample(uids, min(3, len(uids))))
            flag = rng.choice(["\\Seen", "\\Flagged", "\\Answered", "$Label1"])
            op = rng.choice(["+FLAGS", "-FLAGS"])
            await client.call("STORE", picked, op, f"({flag})", may_fail=True)
        else:
            uid = uids.pop(rng.randrange(len(uids)))
            await client.call("STORE", str(uid), "+FLAGS", "(\\Deleted)", may_fail=True)
            await client.call("EXPUNGE", str(uid), may_fail=True)


@pytest.mark.timeout(2400)  # 5,000 operations through real IMAP sessions: a hang guard
async def test_three_stores_converge_after_random_operations(tmp_path: Path) -> None:
    a = SyncSide(tmp_path, "store-a", "store-b", POSTERN_MIRROR_FOLLOWERS="store-c")
    b = SyncSide(tmp_path, "store-b", "store-a")
    c = SyncSide(tmp_path, "store-c", "store-a", POSTERN_MIRROR_FOLLOWER="true")
    for side in (a, b, c):
        side.nats.start()
    a.peer_url, b.peer_url, c.peer_url = b.nats.url, a.nats.url, a.nats.url
    bus_a, bus_b, bus_c = [await fresh_bus(s.nats.url) for s in (a, b, c)]
    dir_a, dir_b = await Directory.open(bus_a.js), await Directory.open(bus_b.js)
    for d in (dir_a, dir_b):
        await d.add_domain("split.test")
    user = await dir_a.add_user(ADDRESS, PASSWORD)
    await dir_b._put("user", user.address, user, create=True)  # same account id
    await dir_b.set_password(user.address, PASSWORD)  # the hash: CREDENTIALS, not the record
    await dir_a.close()
    await dir_b.close()
    account = user.account_id
    clients = [Client(a.imap_port), Client(b.imap_port)]
    try:
        for side in (a, b, c):
            side.start()
        await deliver(bus_a, ["first"])

        async def converged() -> bool:
            try:
                if not await opened(bus_a, account):  # a digest request would open it empty
                    return False
                for bus, peer in ((bus_a, "store-b"), (bus_b, "store-a"), (bus_a, "store-c")):
                    if (await queue.queue(bus.js, peer))[0]:
                        return False
                da = await digests(bus_a, account)
                db, dc = await digests(bus_b, account), await digests(bus_c, account)
            except Exception:  # a store or stream still starting
                return False
            return da == db == dc and da["INBOX"][1] != "0" * 64

        await until(converged, "the first mail reached all three stores", [a, b, c])
        for cl in clients:
            await cl.connect()
        rng = random.Random(13)
        seeds = [random.Random(rng.random()) for _ in clients]
        await asyncio.gather(
            operate(clients[0], bus_a, "a", OPERATIONS // 2, seeds[0]),
            operate(clients[1], bus_b, "b", OPERATIONS // 2, seeds[1]),
        )
        await until(converged, "three stores converged", [a, b, c], timeout=600)
        st = json.loads(
            await mailctl("mirror", "status", "--json", "--nats", a.nats.url, "--peer", "store-c")
        )
        assert st["follower"] is True and st["queued"] == 0 and st["sent"] > OPERATIONS // 4
        for side in (a, b, c):
            side.stop()
        got = [await contents(side.data, account) for side in (a, b, c)]
        assert got[0] == got[1] == got[2]  # mailboxes, UIDVALIDITY, UIDs, bytes, flags
        inbox = next(v for k, v in got[0].items() if k.startswith("INBOX/"))
        assert len(inbox) > OPERATIONS // 10
        uids = [u for u, _, _ in inbox]
        assert len(uids) == len(set(uids))
    finally:
        for cl in clients:
            cl.close()
        for side in (a, b, c):
            for p in side.procs:
                p.kill()
                p.wait()
        for bus in (bus_a, bus_b, bus_c):
            await bus.close()
        for side in (a, b, c):
            side.nats.stop()
