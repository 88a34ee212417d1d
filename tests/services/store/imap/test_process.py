"""IMAP end to end through the real ``python -m services.store`` process: mail published to
the bus is delivered by the store and wakes an IMAPS client in IDLE; STARTTLS on the plain
port; a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from mailcore.tls import client_context_trusting, ensure_certificate
from services.ctl.daemons import free_port, wait_for_port
from tests.services.store.imap.conftest import ALICE, PASSWORD, message
from tests.support.daemons import NatsServer

ROOT = Path(__file__).resolve().parents[4]


class StoreProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def imap_port(self) -> int:
        return int(self.env["POSTERN_IMAP_PORT"])

    @property
    def imaps_port(self) -> int:
        return int(self.env["POSTERN_IMAPS_PORT"])

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.store"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        proc = self.proc
        for port in (self.imap_port, self.imaps_port):
            if not wait_for_port("127.0.0.1", port, 90, lambda: proc.poll() is None):
                self.stop()
                raise AssertionError("store did not start:\n" + self.log.read_text()[-4000:])

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()


def store_env(nats_url: str, tmp_path: Path) -> dict[str, str]:
    """A store process's environment on free ports, with a certificate made here."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificate(cert, key, "localhost")
    return {
        **os.environ,
        "POSTERN_DATA": str(tmp_path / "data"),
        "POSTERN_NATS_URL": nats_url,
        "POSTERN_IMAP_PORT": str(free_port()),
        "POSTERN_IMAPS_PORT": str(free_port()),
        "POSTERN_POP3_PORT": "0",
        "POSTERN_POP3S_PORT": "0",
        "POSTERN_OPS_PORT": str(free_port()),
        "POSTERN_ALLOW_PLAINTEXT_AUTH": "never",
        "POSTERN_AUTH_FAIL_DELAY": "0.1",
        "POSTERN_TLS_CERT": str(cert),
        "POSTERN_TLS_KEY": str(key),
        "POSTERN_FSYNC": "false",
        "POSTERN_LOG_FORMAT": "json",
    }


@pytest.fixture
def store_process(nats_server: NatsServer, tmp_path: Path) -> Iterator[StoreProcess]:
    env = store_env(nats_server.url, tmp_path)
    p = StoreProcess(env, tmp_path / "store.log")
    yield p
    p.stop()


async def test_delivery_wakes_idle_through_the_store_process(
    bus: Bus, store_process: StoreProcess
) -> None:
    directory = await Directory.open(bus.js)
    await directory.add_domain("example.com")
    await directory.add_user(ALICE, PASSWORD)
    await directory.close()
    await asyncio.to_thread(store_process.start)
    tls = client_context_trusting(Path(store_process.env["POSTERN_TLS_CERT"]))
    idling = threading.Event()
    seen: list[object] = []
    body = message(7, subject="through the bus")

    def client() -> bytes:
        with IMAPClient(
            "127.0.0.1", port=store_process.imaps_port, ssl_context=tls, timeout=60
        ) as c:
            c.login(ALICE, PASSWORD)
            c.select_folder("INBOX")
            c.idle()
            idling.set()
            for _ in range(60):
                got = c.idle_check(timeout=2)
                seen.extend(got)
                if any(r[1] == b"EXISTS" for r in got):
                    break
            c.idle_done()
            data = c.fetch("1", ["BODY.PEEK[]"])
            c.logout()
            return bytes(data[1][b"BODY[]"])

    task = asyncio.ensure_future(asyncio.to_thread(client))
    while not idling.is_set():
        await asyncio.sleep(0.05)
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    msg = MailMessage(
        id=new_message_id(), mail_from="sender@example.net", recipients=[ALICE], size=0
    )
    await publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, body)
    fetched = await asyncio.wait_for(task, 180)
    assert (1, b"EXISTS") in seen
    # the store adds its trace header (Return-Path) in front of the message as published
    assert fetched.startswith(b"Return-Path: <sender@example.net>\r\n")
    assert fetched.endswith(body)

    def plain_port() -> list[bytes]:
        # LOGINDISABLED in the clear; STARTTLS, then login works
        with IMAPClient("127.0.0.1", port=store_process.imap_port, ssl=False, timeout=60) as c:
            assert b"LOGINDISABLED" in c.capabilities()
            c.starttls(tls)
            c.login(ALICE, PASSWORD)
            caps = list(c.capabilities())
            c.logout()
            return caps

    caps = await asyncio.to_thread(plain_port)
    assert b"IDLE" in caps and b"QRESYNC" in caps
    assert await asyncio.to_thread(store_process.stop) == 0
