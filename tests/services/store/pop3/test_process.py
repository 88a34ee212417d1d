"""POP3 through the real ``python -m services.store`` process: log in, read, delete, stop the
process, start it again on the same data: UIDL values unchanged, the deletion kept; POP3S
with the configured certificate."""

from __future__ import annotations

import asyncio
import os
import poplib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from mailcore.tls import client_context_trusting
from services.ctl.daemons import free_port, wait_for_port
from tests.services.store.pop3.conftest import PASSWORD, message
from tests.support.daemons import NatsServer

ROOT = Path(__file__).resolve().parents[4]


class StoreProcess:
    def __init__(self, env: dict[str, str], log: Path, port: int) -> None:
        self.env, self.log, self.port = env, log, port
        self.proc: subprocess.Popen[bytes] | None = None

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
        if not wait_for_port("127.0.0.1", self.port, 90, lambda: proc.poll() is None):
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


@pytest.fixture
def store_process(
    nats_server: NatsServer, tmp_path: Path, test_cert: tuple[Path, Path]
) -> Iterator[StoreProcess]:
    cert, key = test_cert
    env = {
        **os.environ,
        "POSTERN_DATA": str(tmp_path / "data"),
        "POSTERN_NATS_URL": nats_server.url,
        "POSTERN_POP3_PORT": str(free_port()),
        "POSTERN_POP3S_PORT": str(free_port()),
        "POSTERN_IMAP_PORT": "0",
        "POSTERN_IMAPS_PORT": "0",
        "POSTERN_OPS_PORT": str(free_port()),
        "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
        "POSTERN_AUTH_FAIL_DELAY": "0.1",
        "POSTERN_TLS_CERT": str(cert),
        "POSTERN_TLS_KEY": str(key),
        "POSTERN_LOG_FORMAT": "json",
    }
    p = StoreProcess(env, tmp_path / "store.log", int(env["POSTERN_POP3_PORT"]))
    yield p
    p.stop()


async def test_pop3_through_the_store_process(
    bus: Bus, store_process: StoreProcess, test_cert: tuple[Path, Path]
) -> None:
    directory = await Directory.open(bus.js)
    await directory.add_domain("example.com")
    alice = await directory.add_user("alice@example.com", PASSWORD)
    await directory.close()
    # mail already in the store before it starts (the engine, on the same data directory)
    data = Path(store_process.env["POSTERN_DATA"])
    engine = await MailStore.open(store_root(data), fsync=False)
    acct = await engine.account(alice.account_id)
    inbox = (await acct.mailbox("INBOX")).id
    for n in (1, 2, 3):
        await acct.append(inbox, message(n))
    await engine.close()

    await asyncio.to_thread(store_process.start)
    port = store_process.port
    pop3s = int(store_process.env["POSTERN_POP3S_PORT"])

    def first() -> tuple[list[bytes], bytes]:
        c = poplib.POP3("127.0.0.1", port, timeout=30)
        c.user("alice@example.com")
        c.pass_(PASSWORD)
        ids = c.uidl()[1]
        body = b"".join(line + b"\r\n" for line in c.retr(2)[1])
        c.dele(1)
        assert c.quit().startswith(b"+OK")
        return ids, body

    ids, body = await asyncio.to_thread(first)
    assert len(ids) == 3 and body == message(2)
    assert await asyncio.to_thread(store_process.stop) == 0

    await asyncio.to_thread(store_process.start)

    def second() -> list[bytes]:
        c = poplib.POP3_SSL("127.0.0.1", pop3s, context=client_context_trusting(test_cert[0]))
        c.user("alice@example.com")
        c.pass_(PASSWORD)
        again = c.uidl()[1]
        c.quit()
        return again

    again = await asyncio.to_thread(second)
    # message 1 is gone; the others keep their ids, renumbered from 1 (RFC 1939 §7)
    assert [x.split()[1] for x in again] == [x.split()[1] for x in ids[1:]]
    assert [x.split()[0] for x in again] == [b"1", b"2"]
