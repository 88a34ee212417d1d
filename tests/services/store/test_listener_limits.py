"""Listener limits of the real store process (``python -m services.store``): the listen
backlog of every IMAP/POP3 port is the setting (1024 by default, as on the SMTP ports), a
server-wide connection cap refuses with a clear goodbye, and a connection that has not
logged in is closed after ``login_timeout`` (RFC 9051 §5.4) while a logged-in one is not."""

from __future__ import annotations

import asyncio
import imaplib
import os
import poplib
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from mailcore.tls import ensure_certificate
from services.ctl.daemons import free_port, wait_for_port
from tests.services.store.imap.test_process import StoreProcess
from tests.support.daemons import NatsServer

ALICE, PASSWORD = "alice@example.com", "password-alice"


def _backlog(port: int) -> int:
    """Send-Q of a listening socket in ``ss -ltn`` is its accept-queue limit (backlog)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.settimeout(30)
        return s.makefile("rb").readline()


@pytest.fixture
async def store(bus: Bus, nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[StoreProcess]:
    directory = await Directory.open(bus.js)
    await directory.add_domain("example.com")
    await directory.add_user(ALICE, PASSWORD)
    await directory.close()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificate(cert, key, "localhost")
    env = {
        **os.environ,
        "POSTERN_DATA": str(tmp_path / "data"),
        "POSTERN_NATS_URL": nats_server.url,
        "POSTERN_IMAP_PORT": str(free_port()),
        "POSTERN_IMAPS_PORT": str(free_port()),
        "POSTERN_POP3_PORT": str(free_port()),
        "POSTERN_POP3S_PORT": str(free_port()),
        "POSTERN_OPS_PORT": str(free_port()),
        "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
        "POSTERN_TLS_CERT": str(cert),
        "POSTERN_TLS_KEY": str(key),
        "POSTERN_FSYNC": "false",
        "POSTERN_LOG_FORMAT": "json",
        "POSTERN_MAX_CONNECTIONS": "3",
        "POSTERN_LOGIN_TIMEOUT": "1",
    }
    p = StoreProcess(env, tmp_path / "store.log")
    await asyncio.to_thread(p.start)
    proc = p.proc
    assert proc is not None
    for name in ("POSTERN_POP3_PORT", "POSTERN_POP3S_PORT"):
        assert wait_for_port("127.0.0.1", int(env[name]), 60, lambda: proc.poll() is None)
    yield p
    await asyncio.to_thread(p.stop)


def _ports(p: StoreProcess) -> dict[str, int]:
    keys = ("IMAP", "IMAPS", "POP3", "POP3S")
    return {k: int(p.env[f"POSTERN_{k}_PORT"]) for k in keys}


async def test_every_port_listens_with_the_smtp_backlog(store: StoreProcess) -> None:
    for name, port in _ports(store).items():
        assert _backlog(port) == 1024, name


async def test_server_wide_cap_and_short_timeout_before_login(store: StoreProcess) -> None:
    ports = _ports(store)

    def scenario() -> None:
        # three connections fill the server-wide cap (IMAP and POP3 count together)
        held = [
            socket.create_connection(("127.0.0.1", ports[k]), timeout=30)
            for k in ("IMAP", "IMAP", "POP3")
        ]
        files = []
        for s in held:
            s.settimeout(30)
            files.append(s.makefile("rb"))
            assert files[-1].readline().startswith((b"* OK", b"+OK"))
        assert _greeting(ports["IMAP"]).startswith(b"* BYE [UNAVAILABLE] Server busy")
        assert _greeting(ports["POP3"]).startswith(b"-ERR [SYS/TEMP] Server busy")
        # RFC 9051 §5.4: not logged in, idle for login_timeout (1 s): autologout
        for s, fh in zip(held, files, strict=True):
            rest = fh.read()
            assert b"Autologout" in rest, rest
            fh.close()
            s.close()
        # logged in, the long timer applies: idle past the login timeout, still served
        imap = imaplib.IMAP4("127.0.0.1", ports["IMAP"], timeout=30)
        imap.login(ALICE, PASSWORD)
        pop = poplib.POP3("127.0.0.1", ports["POP3"], timeout=30)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        time.sleep(2.5)
        assert imap.noop()[0] == "OK"
        assert pop.noop().startswith(b"+OK")
        imap.logout()
        pop.quit()

    await asyncio.wait_for(asyncio.to_thread(scenario), 120)
