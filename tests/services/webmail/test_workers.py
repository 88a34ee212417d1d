"""A webmail node with two processes (``POSTERN_WEBMAIL_WORKERS=2``), through the real
``python -m services.webmail``: both serve the node's one port, a session made in one
works in the other, a worker that dies is started again, and the workers end with the
node's service process (SIGTERM, or killed outright)."""

from __future__ import annotations

import asyncio
import imaplib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from mailcore.bus.connect import Bus
from tests.conftest import fresh_bus
from tests.services.webmail.app_harness import login
from tests.services.webmail.cluster import ALICE, PASSWORD, Cluster, Proc, plain, provision
from tests.support.daemons import NatsServer

WAIT = 60.0  # only a failure waits this long
MAX_TRIES = 64  # connections opened at most to reach each process


@pytest.fixture
async def node(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Bus, Proc]]:
    bus = await fresh_bus(nats_server.url)
    await provision(bus)
    c = Cluster(nats_server.url, tmp_path)
    try:
        c.start_store()
        assert c.store is not None
        with imaplib.IMAP4("127.0.0.1", c.store.port) as imap:
            imap.login(ALICE, PASSWORD)
            imap.append("INBOX", "", None, plain("Served by either process"))
        yield bus, c.start_webmail(POSTERN_WEBMAIL_WORKERS="2")
    finally:
        c.stop()
        await bus.close()


def _worker_on(p: psutil.Process, port: int) -> bool:
    """Whether ``p`` is a live webmail worker listening on ``port``."""
    try:
        if "services.webmail.worker" not in p.cmdline():
            return False
        found = p.net_connections(kind="tcp")
    except psutil.Error:  # ended (a killed worker not yet reaped is a zombie)
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in found)


async def workers_of(node: Proc) -> list[int]:
    """The pids of the node's worker processes, once each listens on the node's port."""
    assert node.proc is not None
    main = psutil.Process(node.proc.pid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        assert node.proc.poll() is None, node.tail()
        with_port = [p.pid for p in main.children() if _worker_on(p, node.port)]
        if with_port:
            return with_port
        assert loop.time() < deadline, node.tail()
        await asyncio.sleep(0.1)


def _ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # a zombie too, for some versions of psutil
        return True


def _owner(local_port: int, server_port: int, pids: list[int]) -> int | None:
    for pid in pids:
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == server_port and c.raddr and c.raddr.port == local_port:
                return pid
    return None


async def page_from(node: Proc, pids: list[int], pid: int, cookie: str) -> str:
    """The Inbox page, asked on a new connection that process ``pid`` accepted."""
    for _ in range(MAX_TRIES):
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        local = writer.get_extra_info("sockname")[1]
        owner = None
        for _ in range(100):  # until the process that got the connection accepted it
            owner = _owner(local, node.port, pids)
            if owner is not None:
                break
            await asyncio.sleep(0.05)
        if owner != pid:
            writer.close()
            continue
        writer.write(
            b"GET /mail?f=INBOX HTTP/1.1\r\nHost: webmail.test\r\n"
            b"Cookie: " + cookie.encode() + b"\r\nConnection: close\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
        return answer.decode(errors="replace")
    raise AssertionError(f"no connection reached process {pid}")


async def test_both_processes_serve_the_port_and_every_session(node: tuple[Bus, Proc]) -> None:
    _, proc = node
    assert proc.proc is not None
    workers = await workers_of(proc)
    assert len(workers) == 1
    pids = [proc.proc.pid, *workers]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proc.port}", timeout=WAIT) as c:
        assert (await login(c)).status_code == 303
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    for pid in pids:
        answer = await page_from(proc, pids, pid, cookie)
        assert answer.startswith("HTTP/1.1 200"), answer[:300]
        assert "Served by either process" in answer
    proc.stop()  # SIGTERM: the service process stops its workers before it ends
    assert proc.proc.returncode == 0
    assert _ended(workers[0])


async def test_a_dead_worker_is_replaced_and_workers_end_with_the_node(
    node: tuple[Bus, Proc],
) -> None:
    _, proc = node
    assert proc.proc is not None
    (first,) = await workers_of(proc)
    os.kill(first, signal.SIGKILL)
    (second,) = await workers_of(proc)
    assert second != first
    events = [json.loads(line).get("event") for line in proc.log.read_text().splitlines()]
    assert "webmail worker ended; restarting" in events
    # killed outright, the service process leaves no worker behind
    proc.kill()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not _ended(second):
        assert loop.time() < deadline, "the worker outlived its service process"
        await asyncio.sleep(0.1)
