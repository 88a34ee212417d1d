"""The store process with IMAP worker processes (``POSTERN_IMAP_WORKERS=2``, issue 20),
through the real ``python -m services.store``: sessions land in both processes on one
port; a session in one process sees, in IDLE, what a session of the other changes (new
messages, flags, keywords announced in FLAGS) and what delivery (store process) adds;
concurrent APPENDs through both never reuse a UID; RECENT never exceeds EXISTS; SIGTERM
stops the workers too."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from mailcore.tls import client_context_trusting
from tests.services.store.imap.conftest import ALICE, HOST, PASSWORD, Line, message
from tests.services.store.imap.test_process import StoreProcess, store_env
from tests.support.daemons import NatsServer

WAIT = 120.0  # only a failure waits this long
MAX_TRIES = 64  # connections opened at most to find a session in each process


@pytest.fixture
def workers_process(nats_server: NatsServer, tmp_path: Path) -> Iterator[StoreProcess]:
    env = store_env(nats_server.url, tmp_path) | {"POSTERN_IMAP_WORKERS": "2"}
    p = StoreProcess(env, tmp_path / "store.log")
    yield p
    p.stop()


def _worker_ready(log: Path) -> bool:
    for line in log.read_text(errors="replace").splitlines():
        try:
            if json.loads(line).get("event") == "imap worker ready":
                return True
        except ValueError:
            continue
    return False


class Client:
    def __init__(self, line: Line, pid: int) -> None:
        self.line, self.pid = line, pid
        self.n = 0

    async def cmd(self, text: str) -> list[bytes]:
        self.n += 1
        tag = f"t{self.n}"
        out = await self.line.cmd(f"{tag} {text}".encode(), timeout=WAIT)
        assert out[-1].startswith(f"{tag} OK".encode()), out
        return out


def _owner(local_port: int, server_port: int, pids: list[int]) -> int:
    """The process holding the server end of the connection from ``local_port``."""
    for pid in pids:
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == server_port and c.raddr and c.raddr.port == local_port:
                return pid
    raise AssertionError(f"no process holds the connection from port {local_port}")


async def start_workers(p: StoreProcess) -> list[int]:
    """Start the store with its worker; the pids, the store process's first."""
    await asyncio.to_thread(p.start)
    while not _worker_ready(p.log):
        assert p.proc is not None and p.proc.poll() is None, p.log.read_text()[-4000:]
        await asyncio.sleep(0.1)
    assert p.proc is not None
    children = psutil.Process(p.proc.pid).children()
    pids = [p.proc.pid] + [c.pid for c in children]
    assert len(pids) == 2
    return pids


async def connect(p: StoreProcess, pids: list[int]) -> tuple[Line, int]:
    """A new IMAPS session, greeted, and the pid of the process serving it."""
    tls = client_context_trusting(Path(p.env["POSTERN_TLS_CERT"]))
    reader, writer = await asyncio.open_connection(HOST, p.imaps_port, ssl=tls)
    line = Line(reader, writer)
    await line.line(WAIT)  # greeting
    return line, _owner(writer.get_extra_info("sockname")[1], p.imaps_port, pids)


async def session_in(p: StoreProcess, pids: list[int], pid: int) -> Client:
    """A new session (not logged in) served by process ``pid``."""
    others: list[Line] = []
    try:
        for _ in range(MAX_TRIES):
            line, owner = await connect(p, pids)
            if owner == pid:
                return Client(line, pid)
            others.append(line)
        raise AssertionError(f"no connection reached process {pid}")
    finally:
        for line in others:
            await line.close()


@pytest.fixture
async def clients(
    bus: Bus, workers_process: StoreProcess
) -> AsyncIterator[tuple[StoreProcess, dict[int, Client]]]:
    """One logged-in session with INBOX selected in each of the two processes."""
    directory = await Directory.open(bus.js)
    await directory.add_domain("example.com")
    await directory.add_user(ALICE, PASSWORD)
    await directory.close()
    p = workers_process
    pids = await start_workers(p)
    found: dict[int, Client] = {}
    for pid in pids:
        c = found[pid] = await session_in(p, pids, pid)
        await c.cmd(f'LOGIN "{ALICE}" "{PASSWORD}"')
        await c.cmd("SELECT INBOX")
    yield p, found
    for c in found.values():
        await c.line.close()


async def _idle_until(c: Client, pattern: bytes) -> list[bytes]:
    """IDLE until an untagged line matching ``pattern`` comes; DONE; what came."""
    await c.line.send(b"i IDLE\r\n")
    got = [await c.line.line(WAIT)]
    assert got[0].startswith(b"+"), got
    while not re.search(pattern, got[-1]):
        got.append(await c.line.line(WAIT))
    await c.line.send(b"DONE\r\n")
    got += await c.line.until_tagged(b"i", WAIT)
    return got


async def test_idle_sessions_see_the_other_process_and_delivery(
    bus: Bus, clients: tuple[StoreProcess, dict[int, Client]]
) -> None:
    p, found = clients
    assert p.proc is not None
    main_pid = p.proc.pid
    main = found[main_pid]
    ((worker_pid, worker),) = ((pid, c) for pid, c in found.items() if pid != main_pid)
    # a message appended in the store process wakes IDLE in the worker
    idling = asyncio.ensure_future(_idle_until(worker, rb"^\* 1 EXISTS"))
    await asyncio.sleep(0.2)  # IDLE is (very likely) waiting; if not, it sees it at once
    body = message(1)
    await main.line.send(b"a1 APPEND INBOX {%d}\r\n" % len(body))
    assert (await main.line.line(WAIT)).startswith(b"+")
    await main.line.send(body + b"\r\n")
    appended = await main.line.until_tagged(b"a1", WAIT)
    assert b"[APPENDUID " in appended[-1]
    await asyncio.wait_for(idling, WAIT)
    # a keyword set in the worker reaches IDLE in the store process, announced in FLAGS
    idling = asyncio.ensure_future(_idle_until(main, rb"^\* 1 FETCH .*\$Project7"))
    await asyncio.sleep(0.2)
    await worker.cmd("UID STORE 1 +FLAGS ($Project7)")
    got = await asyncio.wait_for(idling, WAIT)
    flags = [ln for ln in got if ln.startswith(b"* FLAGS")]
    assert flags and b"$Project7" in flags[0], got
    # delivery (the store process's consumer) wakes IDLE in the worker
    idling = asyncio.ensure_future(_idle_until(worker, rb"^\* 2 EXISTS"))
    await asyncio.sleep(0.2)
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    msg = MailMessage(
        id=new_message_id(), mail_from="sender@example.net", recipients=[ALICE], size=0
    )
    await publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, message(2))
    got = await asyncio.wait_for(idling, WAIT)
    recent = [int(ln.split()[1]) for ln in got if ln.endswith(b" RECENT\r\n")]
    assert all(r <= 2 for r in recent), got
    assert await asyncio.to_thread(p.stop) == 0
    # the store process waited for its worker before it ended
    assert not psutil.pid_exists(worker_pid)


async def test_concurrent_appends_through_both_processes_never_reuse_a_uid(
    clients: tuple[StoreProcess, dict[int, Client]],
) -> None:
    p, found = clients

    async def appends(c: Client, who: int) -> list[int]:
        uids = []
        for i in range(15):
            body = message(100 * who + i)
            tag = f"p{i}".encode()
            await c.line.send(tag + b" APPEND INBOX (\\Seen) {%d}\r\n" % len(body))
            assert (await c.line.line(WAIT)).startswith(b"+")
            await c.line.send(body + b"\r\n")
            done = await c.line.until_tagged(tag, WAIT)
            m = re.search(rb"\[APPENDUID \d+ (\d+)\]", done[-1])
            assert m, done
            uids.append(int(m.group(1)))
        return uids

    results = await asyncio.gather(*(appends(c, i) for i, c in enumerate(found.values())))
    uids = sorted(u for r in results for u in r)
    assert uids == list(range(1, 31))
    # each session sees every message once, and RECENT ≤ EXISTS (RFC 3501 §7.3.2)
    for c in found.values():
        out = await c.cmd("SELECT INBOX")
        exists = [int(ln.split()[1]) for ln in out if ln.endswith(b" EXISTS\r\n")]
        recent = [int(ln.split()[1]) for ln in out if ln.endswith(b" RECENT\r\n")]
        assert exists and exists[-1] == 30, out
        assert all(r <= exists[-1] for r in recent)
        fetched = await c.cmd("UID FETCH 1:* (UID)")
        seen = [int(m.group(1)) for ln in fetched if (m := re.search(rb"FETCH \(UID (\d+)\)", ln))]
        assert sorted(seen) == uids, fetched
    assert await asyncio.to_thread(p.stop) == 0
