"""Roles and failover with two complete stores (own data directories, IMAP/POP3 ports,
nats-servers, store and mirror processes).

Only the master takes inbound mail — also the mail the slave side's filters handed to
the slave's NATS. A promote while mail flows delivers every message exactly once. The
failover drill: kill -9 of the master, every message read on the slave over IMAP and POP3
with the same UIDs and UIDLs, promote, deliver, the old master back as slave catches up.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import poplib
import re
import subprocess
from pathlib import Path

import pytest
from nats.errors import Error as NatsError

from mailcore.bus import mirror as queue
from mailcore.bus import names, roles
from mailcore.bus.connect import Bus
from tests.services.mirror.conftest import (
    Side,
    digests,
    hand_off,
    mailctl,
    role_pair,
    until,
)

# two complete stores, each with its own processes: slow on a loaded machine (a hang guard)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

USER, PASSWORD = "pat@pair.test", "password-pat"
_UID_SUBJECT = re.compile(rb"UID (\d+)")


def imap_inbox(port: int) -> dict[int, str]:
    """UID -> Subject of every INBOX message, read with a real IMAP client."""
    with imaplib.IMAP4("127.0.0.1", port) as imap:
        imap.login(USER, PASSWORD)
        imap.select("INBOX", readonly=True)
        typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        out: dict[int, str] = {}
        for part in data:
            if isinstance(part, tuple):
                m = _UID_SUBJECT.search(part[0])
                assert m is not None
                out[int(m.group(1))] = part[1].decode().split(":", 1)[1].strip()
        return out


def pop3_uidls(port: int) -> list[str]:
    """``UIDL`` of the maildrop (RFC 1939 §7), read with a real POP3 client."""
    pop = poplib.POP3("127.0.0.1", port)
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        _, lines, _ = pop.uidl()
        return [line.decode() for line in lines]
    finally:
        pop.quit()


def _counted(box: dict[int, str]) -> str:
    """How many messages, and the subjects held twice (a message delivered twice)."""
    subjects = sorted(box.values())
    twice = sorted({s for s in subjects if subjects.count(s) > 1})
    return f"{len(box)} messages, UIDs {min(box, default=0)}..{max(box, default=0)}, twice: {twice}"


async def roles_of(side: Side, peer: Side) -> tuple[str, str, bool, bool]:
    args = ["--nats", side.nats.url, "--peer-nats", peer.nats.url, "--peer", side.peer]
    st = json.loads(await mailctl("mirror", "status", "--json", *args))
    here, there = st["roles"]["this"], st["roles"]["peer"]
    return here["role"], there["role"], here["taking_inbound"], there["taking_inbound"]


async def test_promote_and_failover_drill(tmp_path: Path) -> None:
    async with role_pair(tmp_path, USER, PASSWORD) as p:
        a, b, bus_a, bus_b, account = p.a, p.b, p.bus_a, p.bus_b, p.account
        sent: list[str] = []

        async def deliver(bus: Bus, tag: str, n: int) -> None:
            subjects = [f"{tag}-{i}" for i in range(n)]
            await hand_off(bus, USER, subjects)
            sent.extend(subjects)

        seen: dict[str, object] = {}

        async def converged(master: Side, count: int) -> bool:
            """The master holds ``count`` messages, both queues are empty, the digests equal,
            and the slave shows the same count. (The master first: an IMAP login on a side
            that holds nothing of the account yet would create its own default mailboxes.)
            What it saw last goes to ``seen`` (the failure message)."""
            slave = b if master is a else a
            seen.clear()
            try:
                on_master = await asyncio.to_thread(imap_inbox, master.imap_port)
                seen["master"] = _counted(on_master)
                if len(on_master) != count:
                    return False
                for side, bus in ((a, bus_a), (b, bus_b)):
                    seen[f"queued to {side.peer}"] = (await queue.queue(bus.js, side.peer))[0]
                if any(seen[f"queued to {side.peer}"] for side in (a, b)):
                    return False
                da, db = await digests(bus_a, account), await digests(bus_b, account)
                seen["digests"] = (da, db)
                if da != db:
                    return False
                on_slave = await asyncio.to_thread(imap_inbox, slave.imap_port)
                seen["slave"] = _counted(on_slave)
                return len(on_slave) == count
            except (KeyError, TimeoutError, NatsError, OSError, imaplib.IMAP4.error) as exc:
                seen["error"] = repr(exc)
                return False  # a store still starting

        def exactly_once(box: dict[int, str]) -> None:
            assert sorted(box.values()) == sorted(sent)  # none lost, none twice

        a.start()
        b.start()
        # --- only the master delivers; the slave side's hand-off reaches it too -------
        await deliver(bus_a, "a1", 40)
        await deliver(bus_b, "b1", 10)  # the slave side's filters
        await until(lambda: converged(a, 50), "50 messages", [a, b], seen=seen.copy)
        assert await roles_of(a, b) == ("master", "slave", True, False)

        # --- a promote while mail flows: every message exactly once ------------------
        async def stream() -> None:
            for i in range(15):
                await deliver(bus_a, f"flow{i}", 10)
                await asyncio.sleep(0.05)

        flowing = asyncio.create_task(stream())
        out = await mailctl("mirror", "promote", "--nats", b.nats.url, "--peer-nats", a.nats.url)
        await flowing
        assert "store-b is master (epoch 1)" in out
        await until(lambda: converged(b, 200), "200 messages", [a, b], seen=seen.copy)
        assert await roles_of(b, a) == ("master", "slave", True, False)
        before = await asyncio.to_thread(imap_inbox, b.imap_port)
        exactly_once(before)
        assert before == await asyncio.to_thread(imap_inbox, a.imap_port)
        uidls = await asyncio.to_thread(pop3_uidls, b.pop3_port)
        assert len(uidls) == 200

        # --- failover drill: kill -9 of the master (store-b), read all on store-a -----
        b.kill9()
        assert await asyncio.to_thread(imap_inbox, a.imap_port) == before
        assert await asyncio.to_thread(pop3_uidls, a.pop3_port) == uidls
        out = await mailctl("mirror", "promote", "--nats", a.nats.url, "--peer-nats", b.nats.url)
        assert "not running" in out and "store-a is master (epoch 2)" in out
        await deliver(bus_a, "a2", 30)
        await deliver(bus_b, "b2", 30)  # the dead master's site: its filters still accept

        async def a_has_all() -> bool:
            return len(await asyncio.to_thread(imap_inbox, a.imap_port)) == 260

        await until(a_has_all, "the new master delivered all", [a])
        # --- the old master comes back (its setting still says master): it is slave --
        b.start()
        await until(lambda: converged(a, 260), "the old master caught up", [a, b], seen=seen.copy)
        assert await roles_of(a, b) == ("master", "slave", True, False)
        final_a = await asyncio.to_thread(imap_inbox, a.imap_port)
        exactly_once(final_a)
        assert final_a == await asyncio.to_thread(imap_inbox, b.imap_port)
        assert {u: s for u, s in final_a.items() if u in before} == before  # UIDs kept
        assert await asyncio.to_thread(pop3_uidls, b.pop3_port) == await asyncio.to_thread(
            pop3_uidls, a.pop3_port
        )
        # the role survives a restart of both stores
        a.stop()
        b.stop()
        a.start()
        b.start()

        async def roles_back() -> bool:
            return await roles_of(a, b) == ("master", "slave", True, False)

        await until(roles_back, "roles after a restart", [a, b])


async def test_a_demoted_peer_does_not_make_this_side_master(tmp_path: Path) -> None:
    """Step 1 of a promote of store-b demotes store-a (slave at the next epoch). store-b's
    mirror sees that record and must leave store-b slave: only the promote, once the old
    master stopped and all it committed is on store-b, writes store-b's master record
    (taking master on its own made both stores deliver at once, with clashing UIDs)."""
    async with role_pair(tmp_path, USER, PASSWORD) as p:
        a, b, bus_a, bus_b = p.a, p.b, p.bus_a, p.bus_b
        a.start()
        b.start()

        async def b_reads_a(epoch: int) -> bool:
            st = await queue.read_status(bus_b.js, "store-a")
            return bool(st.get("peer_link")) and st.get("peer_epoch") == epoch

        await until(lambda: b_reads_a(0), "store-b's mirror reading store-a's role", [a, b])
        await roles.write(bus_a.js, roles.SLAVE, 1, "store-a")  # promote's step 1
        await until(lambda: b_reads_a(1), "store-b's mirror reading the demotion", [a, b])
        seen_at = float((await queue.read_status(bus_b.js, "store-a"))["at"])

        async def next_report() -> bool:  # a whole roles pass ran with the new record
            return float((await queue.read_status(bus_b.js, "store-a"))["at"]) > seen_at

        await until(next_report, "store-b's mirror reporting again", [a, b])
        own = await roles.read(bus_b.js)
        assert own is not None and (own.role, own.epoch) == ("slave", 0)
        out = await mailctl("mirror", "promote", "--nats", b.nats.url, "--peer-nats", a.nats.url)
        assert "store-b is master (epoch 2)" in out  # the promote still makes it master


async def test_committed_not_acked_is_a_duplicate_on_the_new_master(tmp_path: Path) -> None:
    """The master commits a batch and dies before its ack (crash point); back up, it ships
    the batch; a promote follows; JetStream hands the unacked messages to the new master
    (through its mirror), whose delivery keys — replicated with the batch — make each a
    duplicate: every message once, on both stores."""
    async with role_pair(tmp_path, USER, PASSWORD) as p:
        a, b, bus_a, bus_b, account = p.a, p.b, p.bus_a, p.bus_b, p.account
        # The restarted master must not have the batch back (and settle it itself, as
        # duplicates) before the promote hands it to the new master: the default minute.
        a.ack_wait = 60.0
        subjects = [f"crash-{i}" for i in range(10)]
        await hand_off(bus_a, USER, subjects)  # waiting on the bus before the store starts
        a.store_env = {"POSTERN_FAULT_POINT": "store.after_commit"}
        a.start()
        b.start()
        store_a = a.procs[0]
        await until(lambda: _exited(store_a), "store A killed itself after its commit", [b])
        a.kill9()  # its mirror too; both come back without the crash point
        a.store_env = {}
        a.start()

        async def shipped() -> bool:
            try:
                if (await queue.queue(bus_a.js, "store-b"))[0]:
                    return False
                d_a = await digests(bus_a, account)
                return bool(d_a.get("INBOX")) and d_a == await digests(bus_b, account)
            except (KeyError, TimeoutError, NatsError):
                return False

        await until(shipped, "the committed batch reached store B", [a, b])
        assert sorted((await asyncio.to_thread(imap_inbox, a.imap_port)).values()) == sorted(
            subjects
        )
        inbound = await bus_a.js.stream_info(names.STREAM_INBOUND)
        assert inbound.state.messages == len(subjects)  # committed, never acked
        await mailctl("mirror", "promote", "--nats", b.nats.url, "--peer-nats", a.nats.url)

        async def settled() -> bool:
            left = (await bus_a.js.stream_info(names.STREAM_INBOUND)).state.messages
            here = (await bus_b.js.stream_info(names.STREAM_INBOUND)).state.messages
            return left == 0 and here == 0

        await until(settled, "the unacked messages settled on the new master", [a, b])

        async def forwarded() -> bool:  # it was the new master that settled them
            status = await queue.read_status(bus_b.js, "store-a")
            return bool(status.get("forwarded", 0) == len(subjects))

        await until(forwarded, "the new master's mirror reported the hand-off", [a, b])
        for side in (a, b):
            box = await asyncio.to_thread(imap_inbox, side.imap_port)
            assert sorted(box.values()) == sorted(subjects)  # once each, no second copy


async def _exited(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None
