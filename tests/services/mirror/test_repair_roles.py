"""The scheduled repair pass follows the roles, not the names (two complete stores: own
nats-servers, data directories, store and mirror processes).

``store-a`` starts as master and repairs; after ``mailctl mirror promote`` of ``store-b``
the new master repairs the new slave: a message removed behind the mirror's back on
``store-a`` (now slave) comes back from ``store-b``. Under the old rule (the first node by
name repairs) ``store-b`` never ran the pass and ``store-a`` made ``store-b`` like itself,
expunging the message there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nats.errors import Error as NatsError

from mailcore.bus import mirror as queue
from mailcore.bus import names, roles
from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from services.mirror import repair
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import Side, digests, hand_off, mailctl, request, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

USER = "pat@pair.test"
GUARD = 120.0  # seconds: a hang guard for each wait, not a timing assertion


class RepairSide(Side):
    def env(self) -> dict[str, str]:
        return {**super().env(), "POSTERN_MIRROR_REPAIR_INTERVAL": "1"}


async def runs(bus: Bus, peer: str) -> int:
    return int((await queue.read_status(bus.js, f"repair.{peer}")).get("runs", 0))


async def inbox_count(bus: Bus, account: str) -> int:
    state = await request(bus, "state", {"account": account})
    return sum(int(m["messages"]) for m in state["mailboxes"] if m["name"] == "INBOX")


async def test_the_new_master_repairs_after_a_promote(tmp_path: Path) -> None:
    a = RepairSide(tmp_path, "store-a", "store-b", role="master")
    b = RepairSide(tmp_path, "store-b", "store-a", role="slave")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    bus_a, bus_b = await fresh_bus(a.nats.url), await fresh_bus(b.nats.url)
    try:
        directory = await Directory.open(bus_a.js)
        await directory.add_domain("pair.test")
        account = (await directory.add_user(USER, "password-pat")).account_id
        await directory.close()
        a.start()
        b.start()
        await hand_off(bus_a, USER, [f"m{i}" for i in range(5)])

        async def settled() -> bool:
            try:
                if (await queue.queue(bus_a.js, "store-b"))[0]:
                    return False
                if (await queue.queue(bus_b.js, "store-a"))[0]:
                    return False
                if await inbox_count(bus_a, account) != 5:
                    return False
                return await digests(bus_a, account) == await digests(bus_b, account)
            except (KeyError, TimeoutError, NatsError):
                return False

        await until(settled, "5 messages on both stores", [a, b], GUARD)

        async def a_repaired() -> bool:
            return await runs(bus_a, "store-b") >= 1

        await until(a_repaired, "the master (store-a) ran the pass", [a, b], GUARD)
        assert await queue.read_status(bus_b.js, "repair.store-a") == {}  # the slave: never
        # --- store-b becomes master --------------------------------------------------------
        await mailctl("mirror", "promote", "--nats", b.nats.url, "--peer-nats", a.nats.url)

        async def b_repaired() -> bool:
            return await runs(bus_b, "store-a") >= 1

        await until(b_repaired, "the new master (store-b) ran the pass", [a, b], GUARD)

        async def a_stood_down() -> bool:
            return bool((await queue.read_status(bus_a.js, "repair.store-b")).get("not_here"))

        await until(a_stood_down, "the old master left the pass to the new one", [a, b], GUARD)
        a_runs = await runs(bus_a, "store-b")
        # --- a divergence on the new slave: one message expunged behind the mirror's back --
        state = await request(bus_a, "state", {"account": account})
        inbox = next(m for m in state["mailboxes"] if m["name"] == "INBOX")
        hdr = {
            names.HDR_MIRROR_REPAIR: json.dumps(
                {"op": "expunge", "account": account, "origin": "store-b",
                 "mailbox_id": inbox["id"], "uids": [2], "modseq": inbox["highestmodseq"] + 1}
            )
        }  # fmt: skip
        await bus_a.nc.request(names.SUBJECT_REPLICA + "force", b"", timeout=30, headers=hdr)
        assert await inbox_count(bus_a, account) == 4

        async def repaired() -> bool:
            record = await queue.read_status(bus_b.js, "repair.store-a")
            return int(record.get("fixed_total", 0)) >= 1

        await until(repaired, "the new master's pass fixed the slave", [a, b], GUARD)
        record = await queue.read_status(bus_b.js, "repair.store-a")
        assert record["fixed_total"] == 1 and record["fixes"] == {"added": 1}, record
        # the message came back to the slave (the master's copy wins), none went from the master
        assert await inbox_count(bus_a, account) == await inbox_count(bus_b, account) == 5
        assert await digests(bus_a, account) == await digests(bus_b, account)
        assert await runs(bus_a, "store-b") == a_runs  # the old master ran no pass since
        text = await mailctl("mirror", "status", "--nats", a.nats.url, "--peer", "store-b")
        assert "repair pass: not here (slave: the master repairs)" in text, text
        text = await mailctl("mirror", "status", "--nats", b.nats.url, "--peer", "store-a")
        assert "repair pass: last" in text and "next due" in text, text
    finally:
        await bus_a.close()
        await bus_b.close()
        for side in (a, b):
            side.reap()
            side.nats.stop()


def test_who_repairs() -> None:
    master, slave = roles.RoleRecord("master", 3), roles.RoleRecord("slave", 3)
    assert repair.runs_here("store-b", "store-a", master, slave)  # the master, whatever its name
    assert not repair.runs_here("store-a", "store-b", slave, master)
    # no roles, half a pair, or two masters: the first node by name, and only it
    for own, theirs in ((None, None), (master, None), (None, slave), (master, master)):
        assert repair.runs_here("store-a", "store-b", own, theirs)
        assert not repair.runs_here("store-b", "store-a", theirs, own)
