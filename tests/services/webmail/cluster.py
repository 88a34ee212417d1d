"""Real processes for the browser tests: the store, a filter and webmail nodes
(``python -m services.…``) on the session's nats-server, a round-robin TCP balancer in
front of the webmail nodes ("one address"), and an HTTP listener on 127.0.0.2 that
counts every request (the "remote" server hostile mail tries to reach)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import imaplib
import itertools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import aiosmtplib

from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from services.ctl.daemons import free_port, wait_for_port
from tests.support.daemons import Spamd

ROOT = Path(__file__).resolve().parents[3]
ALICE = "alice@example.com"
BOB = "bob@example.com"
PASSWORD = "correct horse battery"
SESSION_KEY = "a2V5LWZvci10aGUtd2VibWFpbC10ZXN0cy0zMmJ5dGU="  # 32 bytes, base64


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        proc = self.proc
        if not wait_for_port("127.0.0.1", self.port, 60, lambda: proc.poll() is None):
            raise AssertionError(f"{self.name} did not start:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Balancer:
    """Round-robin TCP: each new connection goes to the next node that accepts it."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._turn = itertools.count()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.served: list[int] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        start = next(self._turn)
        for i in range(len(self.ports)):  # each node once (racing connections share _turn)
            port = self.ports[(start + i) % len(self.ports)]
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
                self.served.append(port)
                break
            except OSError:
                continue
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    w.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


class Tarpit:
    """The 'remote' web server of hostile mail: answers anything, counts every request."""

    def __init__(self) -> None:
        self.hits: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.2", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(reader.readline(), 5)
            self.hits.append(line)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@dataclass
class Cluster:
    nats_url: str
    workdir: Path
    spamd: Spamd | None = None
    store: Proc | None = None
    filter: Proc | None = None
    webmails: list[Proc] = field(default_factory=list)
    smtp_port: int = 0
    submission_port: int = 0

    def _env(self, data: str, **extra: str) -> dict[str, str]:
        return (
            os.environ
            | {
                "POSTERN_NATS_URL": self.nats_url,
                "POSTERN_DATA": str(self.workdir / data),
                "POSTERN_OPS_PORT": str(free_port()),
                "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
                "POSTERN_LOG_FORMAT": "json",
            }
            | extra
        )

    def start_store(self, **extra: str) -> None:
        port = free_port()
        env = self._env(
            "store",
            POSTERN_IMAP_PORT=str(port),
            POSTERN_IMAPS_PORT="0",
            POSTERN_POP3_PORT="0",
            POSTERN_POP3S_PORT="0",
            **extra,
        )
        self.store = Proc(
            "store", [sys.executable, "-m", "services.store"], env, self.workdir / "store.log", port
        )
        self.store.start()

    def start_filter(self) -> None:
        self.smtp_port, self.submission_port = free_port(), free_port()
        env = self._env(
            "filter",
            POSTERN_SMTP_PORT=str(self.smtp_port),
            POSTERN_SUBMISSION_PORT=str(self.submission_port),
            POSTERN_SUBMISSIONS_PORT=str(free_port()),
            POSTERN_SPAMD_ENABLED="false",
            POSTERN_CLAMD_ENABLED="false",
            POSTERN_DKIM_VERIFY="false",
            POSTERN_HOSTNAME="mx.example.test",
        )
        self.filter = Proc(
            "filter",
            [sys.executable, "-m", "services.filter"],
            env,
            self.workdir / "filter.log",
            self.smtp_port,
        )
        self.filter.start()

    def start_webmail(self, **env: str) -> Proc:
        assert self.store is not None
        n = len(self.webmails)
        port = free_port()
        extra = {
            # one process per node unless a test asks for more (test_workers.py): a test
            # that kills a node and starts it again on its port expects nothing else there
            "POSTERN_WEBMAIL_WORKERS": "1",
            "POSTERN_HTTP_PORT": str(port),
            "POSTERN_IMAP_PORT": str(self.store.port),
            "POSTERN_SUBMISSION_PORT": str(self.submission_port),
            "POSTERN_SUBMISSION_STARTTLS": "false",
            "POSTERN_WEBMAIL_SESSION_KEY": SESSION_KEY,
            "POSTERN_WEBMAIL_SPAMD_ENABLED": "true" if self.spamd else "false",
            **env,
        }
        if self.spamd is not None:
            extra |= {
                "POSTERN_WEBMAIL_SPAMD_HOST": self.spamd.host,
                "POSTERN_WEBMAIL_SPAMD_PORT": str(self.spamd.port),
            }
        node = Proc(
            f"webmail{n}",
            [sys.executable, "-m", "services.webmail"],
            self._env(f"webmail{n}", **extra),
            self.workdir / f"webmail{n}.log",
            port,
        )
        node.start()
        self.webmails.append(node)
        return node

    def stop(self) -> None:
        for p in [*self.webmails, self.filter, self.store]:
            if p is not None:
                p.stop()

    async def smtp(self, message: bytes, rcpt: str = ALICE) -> None:
        await aiosmtplib.send(
            message,
            sender="carol@remote.test",
            recipients=[rcpt],
            hostname="127.0.0.1",
            port=self.smtp_port,
            timeout=30,
            start_tls=False,
        )

    def _fetch_all(self, user: str, box: str) -> list[Message]:
        assert self.store is not None
        with imaplib.IMAP4("127.0.0.1", self.store.port) as imap:
            imap.login(user, PASSWORD)
            if imap.select(f'"{box}"', readonly=True)[0] != "OK":
                return []
            _, found = imap.uid("SEARCH", "ALL")
            out = []
            for uid in found[0].split():
                _, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                item = data[0]
                assert isinstance(item, tuple)
                out.append(email.message_from_bytes(item[1]))
            return out

    async def mailbox(
        self, user: str, box: str, *, at_least: int = 1, timeout: float = 60
    ) -> list[Message]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await asyncio.to_thread(self._fetch_all, user, box)
            if len(found) >= at_least or loop.time() > deadline:
                return found
            await asyncio.sleep(0.3)


async def provision(bus: Bus) -> None:
    directory = await Directory.open(bus.js, watch=False)
    await directory.add_domain("example.com")
    await directory.add_user(ALICE, PASSWORD)
    await directory.add_user(BOB, PASSWORD)


def plain(
    subject: str,
    body: str = "Hello there.",
    sender: str = "Carol <carol@remote.test>",
    to: str = ALICE,
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash(subject))}@remote.test>\r\n"
        f"Date: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def html(subject: str, markup: str, to: str = ALICE) -> bytes:
    return (
        f"From: Mallory <mallory@remote.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash(subject))}.h@remote.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{markup}\r\n"
    ).encode()
