"""Synchronous mirroring with two complete stores and a filter: mail sent by SMTP gets its
250 (and the bus its ack), and an IMAP APPEND its OK, only once the slave committed it —
so a kill -9 of the master's whole side (filter, store, mirror and nats-server) right
after the 250 and the OK loses nothing; and when the slave does not answer within the
timeout, the write is answered anyway and status and metrics say the mirror fell back to
asynchronous."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.connect import Bus, connect
from mailcore.directory import Directory
from services.ctl.daemons import wait_for_port
from tests.conftest import fresh_bus
from tests.services.filter.test_processes import spawn
from tests.services.mirror.conftest import contents, digests, mailctl, until
from tests.services.mirror.test_split_brain import (
    ADDRESS,
    PASSWORD,
    Client,
    SplitSide,
    deliver,
    opened,
)

pytestmark = pytest.mark.slow


class SyncSide(SplitSide):
    def __init__(self, tmp: Path, node: str, peer: str, **extra: str) -> None:
        super().__init__(tmp, node, peer)
        self.extra = extra

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}

    def kill_all(self) -> None:
        """kill -9 of the store, its mirror, its nats-server (and its filter, if any)."""
        self.kill9()
        self.mirror = None
        self.nats.kill()


async def inbound(bus: Bus) -> Any:
    return await bus.js.consumer_info(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)


def send(port: int, subject: str) -> dict[str, tuple[int, bytes]]:
    """One message by SMTP; returns once the reply to DATA is 250 (smtplib raises else)."""
    body = f"From: x@x.example\r\nSubject: {subject}\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=600) as client:
        return client.sendmail("x@x.example", [ADDRESS], body)


async def messages_in(data: Path, account: str) -> int:
    """How many messages INBOX of a stopped store holds."""
    got = await contents(data, account)
    return len(next(v for k, v in got.items() if k.startswith("INBOX/")))


async def sync_pair(tmp: Path, **extra: str) -> tuple[SyncSide, SyncSide, Bus, Bus, str]:
    """store-a in synchronous mode towards store-b (``extra``: more of store-a's settings),
    their nats-servers running, a test connection to each, the user on both (same account
    id); the account id last."""
    a = SyncSide(
        tmp,
        "store-a",
        "store-b",
        POSTERN_MIRROR_SYNC_PEER="store-b",
        POSTERN_MIRROR_SYNC_TIMEOUT="300",  # a guard against a hang, not a timing
        **extra,
    )
    b = SyncSide(tmp, "store-b", "store-a")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    bus_a, bus_b = await fresh_bus(a.nats.url), await fresh_bus(b.nats.url)
    dir_a, dir_b = await Directory.open(bus_a.js), await Directory.open(bus_b.js)
    for d in (dir_a, dir_b):
        await d.add_domain("split.test")
    user = await dir_a.add_user(ADDRESS, PASSWORD)
    await dir_b._put("user", user.address, user, create=True)  # same account id
    await dir_b.set_password(user.address, PASSWORD)  # the hash: CREDENTIALS, not the record
    await dir_a.close()
    await dir_b.close()
    return a, b, bus_a, bus_b, user.account_id


async def stop_pair(a: SyncSide, b: SyncSide, bus_a: Bus, bus_b: Bus) -> None:
    """Teardown: a stopped mirror resumed, then every process and nats-server killed."""
    for side in (a, b):
        if side.mirror is not None and side.mirror.poll() is None:
            os.kill(side.mirror.pid, signal.SIGCONT)
        for p in side.procs:
            p.kill()
            p.wait()
    await bus_a.close()
    await bus_b.close()
    a.nats.stop()
    b.nats.stop()


async def both_hold(bus_a: Bus, bus_b: Bus, account: str) -> bool:
    """Both stores hold the same mail of ``account``, INBOX not empty."""
    try:
        if not await opened(bus_a, account):  # a digest request would open it empty
            return False
        da, db = await digests(bus_a, account), await digests(bus_b, account)
    except Exception:
        return False
    return da == db and "INBOX" in da and da["INBOX"][1] != "0" * 64


async def started(
    a: SyncSide, b: SyncSide, bus_a: Bus, bus_b: Bus, account: str
) -> Callable[[], Awaitable[bool]]:
    """Both sides started and a first mail on both; returns the check that both hold the
    same mail (for the next waits)."""
    a.start()
    b.start()
    await deliver(bus_a, ["warm"])

    async def converged() -> bool:
        return await both_hold(bus_a, bus_b, account)

    await until(converged, "the first mail reached both stores", [a, b])
    return converged


async def test_sync_mode_kill9_after_ack_and_timeout_fallback(tmp_path: Path) -> None:
    a, b, bus_a, bus_b, account = await sync_pair(tmp_path)
    client = Client(a.imap_port)
    try:
        await started(a, b, bus_a, bus_b, account)

        async def converged() -> bool:  # bus_a is connected anew below
            return await both_hold(bus_a, bus_b, account)

        await client.connect()
        before = (await digests(bus_a, account))["INBOX"]
        # the master's filter: its 250 waits for the store's word (a guard, not a timing)
        smtp = spawn("filter-a", a.nats.url, tmp_path, {"POSTERN_HANDOFF_SYNC_TIMEOUT": "300"})
        a.procs.append(smtp.proc)
        alive = lambda: smtp.proc.poll() is None  # noqa: E731
        assert await asyncio.to_thread(wait_for_port, "127.0.0.1", smtp.smtp, 60, alive)
        # --- the slave's mirror frozen: the master commits, but gives no 250, no ack ---
        assert b.mirror is not None
        os.kill(b.mirror.pid, signal.SIGSTOP)
        sent = asyncio.ensure_future(asyncio.to_thread(send, smtp.smtp, "sync1"))

        async def committed_on_a() -> bool:
            return (await digests(bus_a, account))["INBOX"] != before

        await until(committed_on_a, "the master committed the delivery", [a])
        assert (await inbound(bus_a)).num_ack_pending == 1  # held until the slave commits
        assert not sent.done()  # no 250 yet: the slave cannot have committed it
        os.kill(b.mirror.pid, signal.SIGCONT)
        assert await sent == {}  # 250 (smtplib: no recipient refused)

        async def acked() -> bool:
            info = await inbound(bus_a)
            return bool(info.num_ack_pending == 0 and info.num_pending == 0)

        await client.append("INBOX", "sync2")  # answered OK only after the slave's commit
        a.kill_all()  # right after the 250 and the OK: nothing more can leave the master
        client.imap = None
        b.stop()
        # warm, sync1 (sent by SMTP) and sync2 (APPENDed): all on the slave
        assert await messages_in(b.data, account) == 3
        # --- the timeout: the slave's mirror down, the write answered anyway ----------
        a.extra["POSTERN_MIRROR_SYNC_TIMEOUT"] = "2"
        a.nats.start()
        await bus_a.close()
        bus_a = await connect(a.nats.url, "postern-test", wait=10)  # the directory kept
        a.start()
        b._spawn("services.store")  # no mirror: the slave never commits
        await deliver(bus_a, ["late"])
        await until(acked, "the delivery acked after the timeout", [a])

        async def degraded() -> bool:
            sync = await queue.read_status(bus_a.js, "sync-store-b")
            return sync.get("degraded_since") is not None

        await until(degraded, "status says asynchronous", [a])
        st = json.loads(await mailctl("mirror", "status", "--json", "--nats", a.nats.url))
        assert st["sync"]["timeouts"] >= 1
        text = await mailctl("mirror", "status", "--nats", a.nats.url)
        assert "sync: DEGRADED" in text
        assert "synchronous mirror timed out" in a.log.read_text()
        # --- the slave's mirror back: synchronous again after the next write ----------
        b.heal()
        await until(converged, "the slave caught up", [a, b])
        await deliver(bus_a, ["again"])

        async def synchronous() -> bool:
            sync = await queue.read_status(bus_a.js, "sync-store-b")
            return bool(sync) and sync.get("degraded_since") is None

        await until(synchronous, "synchronous again", [a, b])
        assert "sync: on" in await mailctl("mirror", "status", "--nats", a.nats.url)
    finally:
        client.close()
        await stop_pair(a, b, bus_a, bus_b)


def _served_by(pid: int, client: Client) -> bool:
    """Whether process ``pid`` holds the server end of ``client``'s IMAP connection."""
    assert client.imap is not None
    port = client.imap.sock.getsockname()[1]
    return any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections("tcp"))


async def test_sync_mode_append_in_an_imap_worker_waits_for_the_slave(tmp_path: Path) -> None:
    """With IMAP worker processes (``POSTERN_IMAP_WORKERS``), an APPEND served by a worker,
    not the store process, is answered OK only once the slave committed it too."""
    a, b, bus_a, bus_b, account = await sync_pair(tmp_path, POSTERN_IMAP_WORKERS="2")
    clients: list[Client] = []
    try:
        converged = await started(a, b, bus_a, bus_b, account)
        store = psutil.Process(a.procs[0].pid)

        def workers() -> list[int]:
            return [c.pid for c in store.children() if "imap_worker" in " ".join(c.cmdline())]

        async def worker_listening() -> bool:
            return any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == a.imap_port
                for pid in workers()
                for c in psutil.Process(pid).net_connections("tcp")
            )

        await until(worker_listening, "the IMAP worker process listening", [a])
        (worker,) = workers()
        client = None
        for _ in range(200):  # the kernel spreads connections over the two processes
            c = Client(a.imap_port)
            await c.connect()
            if _served_by(worker, c):
                client = c
                break
            c.close()  # (the per-user connection cap)
        assert client is not None, "no connection reached the worker process"
        clients.append(client)
        before = (await digests(bus_a, account))["INBOX"]
        assert b.mirror is not None
        os.kill(b.mirror.pid, signal.SIGSTOP)  # the slave commits nothing
        appending = asyncio.ensure_future(client.append("INBOX", "through-worker"))

        async def queued_for_b() -> bool:
            committed = (await digests(bus_a, account))["INBOX"] != before
            return committed and (await queue.queue(bus_a.js, "store-b"))[0] > 0

        await until(queued_for_b, "the master committed the APPEND and queued it", [a])
        assert not appending.done()  # no OK: the slave cannot have committed it
        os.kill(b.mirror.pid, signal.SIGCONT)
        await appending  # OK once the slave committed
        assert await converged()
        # no wait ran into the timeout: not the APPEND's, not a LOGIN's (a login is no
        # write; a process started after the peer committed the account's last record
        # waited the whole timeout for a note about it that never came)
        assert "synchronous mirror timed out" not in a.log.read_text()
    finally:
        for c in clients:
            c.close()
        await stop_pair(a, b, bus_a, bus_b)


async def test_a_filter_on_the_slaves_nats_gets_the_masters_word(tmp_path: Path) -> None:
    """A filter handing to the slave's NATS: the master's mirror moves the mail over and
    carries the master store's word back (services/mirror/notices.py), so the 250 means
    both stores have it. Before, that filter waited out its whole timeout every time and
    answered 250 without the word."""
    a, b, bus_a, bus_b, account = await sync_pair(tmp_path)
    a.role, b.role = "master", "slave"  # the slave does not consume its inbound mail
    try:
        converged = await started(a, b, bus_a, bus_b, account)
        # the timeout: a guard against a hang; the word must come, not the timeout
        smtp = spawn("filter-b", b.nats.url, tmp_path, {"POSTERN_HANDOFF_SYNC_TIMEOUT": "120"})
        b.procs.append(smtp.proc)
        alive = lambda: smtp.proc.poll() is None  # noqa: E731
        assert await asyncio.to_thread(wait_for_port, "127.0.0.1", smtp.smtp, 60, alive)
        for n in range(3):
            assert await asyncio.to_thread(send, smtp.smtp, f"via-b-{n}") == {}
        log = (tmp_path / "filter-b.log").read_text()
        assert "no word of synchronous delivery" not in log
        # the 250s came after the master's store and its peer committed: both hold all 4
        await until(converged, "both stores hold the mail", [a, b])
        b.stop()
        assert await messages_in(b.data, account) == 4
    finally:
        await stop_pair(a, b, bus_a, bus_b)
