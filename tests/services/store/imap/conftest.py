"""A real IMAP server for the tests: real NATS directory, real mail store (SQLite and files
in a temp dir), real TLS with a certificate made for the test, both listeners on free
loopback ports. Blocking clients (imaplib, imapclient) run in a thread (``await h.run(fn)``)
while the server keeps serving on the test's event loop."""

from __future__ import annotations

import asyncio
import imaplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailcore.bus.connect import Bus
from mailcore.config import PlaintextAuth
from mailcore.directory import Directory, User
from mailcore.mailstore import Account, MailStore
from mailcore.tls import client_context_trusting, ensure_certificate, server_context
from services.store.auth import Authenticator, ConnectionLimiter, LoginThrottle, PlaintextPolicy
from services.store.auth_rpc import AuthResponder
from services.store.imap.runtime import Runtime
from services.store.imap.server import Endpoint, ImapServer

T = TypeVar("T")
HOST = "127.0.0.1"
PASSWORD = "correct horse battery"
ALICE = "alice@example.com"


def message(n: int, body: bytes = b"", subject: str | None = None) -> bytes:
    subj = (subject or f"message {n}").encode()
    return (
        b"From: Sender <sender@example.net>\r\nTo: alice@example.com\r\n"
        b"Date: Mon, 4 Mar 2024 10:00:0%d +0000\r\n"
        b"Subject: %s\r\nMessage-ID: <m%d@example.net>\r\n\r\n" % (n % 10, subj, n)
    ) + (body or b"Body of message %d.\r\nSecond line.\r\n" % n)


@dataclass
class Line:
    """A tiny raw IMAP client for transcripts and hostile-input tests."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 30) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def until_tagged(self, tag: bytes, timeout: float = 30) -> list[bytes]:
        out = []
        while True:
            ln = await self.line(timeout)
            if not ln:
                raise ConnectionError(f"closed before {tag!r}: {out!r}")
            out.append(ln)
            if ln.startswith(tag + b" "):
                return out

    async def cmd(self, data: bytes, timeout: float = 30) -> list[bytes]:
        tag = data.split(b" ", 1)[0]
        await self.send(data + b"\r\n")
        return await self.until_tagged(tag, timeout)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


@dataclass
class ImapHarness:
    store: MailStore
    directory: Directory
    server: ImapServer
    cert: Path
    root: Path
    users: dict[str, User] = field(default_factory=dict)

    @property
    def rt(self) -> Runtime:
        return self.server.rt

    @property
    def port(self) -> int:
        return self.server.port(implicit_tls=False)

    @property
    def imaps_port(self) -> int:
        return self.server.port(implicit_tls=True)

    @property
    def client_tls(self) -> ssl.SSLContext:
        return client_context_trusting(self.cert)

    async def add_user(self, address: str = ALICE, **quota: int) -> User:
        if self.directory.domain(address.split("@")[1]) is None:
            await self.directory.add_domain(address.split("@")[1])
        user = await self.directory.add_user(address, PASSWORD, **quota)
        self.users[address] = user
        return user

    async def account(self, address: str = ALICE) -> Account:
        return await self.store.account(self.users[address].account_id)

    async def inbox(self, address: str = ALICE) -> tuple[Account, int]:
        acct = await self.account(address)
        return acct, (await acct.mailbox("INBOX")).id

    async def deliver(
        self, *messages: bytes, address: str = ALICE, date: float = 1709546400.0
    ) -> list[int]:
        acct, inbox = await self.inbox(address)
        return [(await acct.append(inbox, m, internal_date=date)).uid for m in messages]

    def imaplib(self, *, login: bool = True, tls: bool = False) -> imaplib.IMAP4:
        """An imaplib client (call from a thread)."""
        if tls:
            c: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                HOST, self.imaps_port, ssl_context=self.client_tls, timeout=60
            )
        else:
            c = imaplib.IMAP4(HOST, self.port, timeout=60)
        if login:
            c.login(ALICE, PASSWORD)
        return c

    async def raw(self, *, tls: bool = False) -> Line:
        port = self.imaps_port if tls else self.port
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=self.client_tls if tls else None, limit=64 * 1024 * 1024
        )
        c = Line(reader, writer)
        greeting = await c.line()
        assert greeting.startswith(b"* OK"), greeting
        return c

    async def raw_login(self) -> Line:
        c = await self.raw()
        reply = await c.cmd(f'L1 LOGIN {ALICE} "{PASSWORD}"'.encode())
        assert reply[-1].startswith(b"L1 OK"), reply
        return c

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wait_for(asyncio.to_thread(fn), 240)

    async def wait_idle(self) -> None:
        for _ in range(2000):
            if self.server.open_sessions == 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("IMAP sessions still open")


Factory = Callable[..., Awaitable[ImapHarness]]


@pytest.fixture
async def make_imap(bus: Bus, tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[ImapHarness] = []
    directory = await Directory.open(bus.js, passwords=True)
    # the store's auth responder too (the webmail's password change asks it)
    responder = AuthResponder(bus, directory)
    await responder.start()

    async def make(
        *,
        plaintext: PlaintextAuth = "loopback",
        idle_timeout: float = 1800.0,
        max_message_size: int = 50_000_000,
        fail_delay: float = 0.05,
        max_per_ip: int = 100,
        max_per_user: int = 50,
        throttle: LoginThrottle | None = None,
        user: bool = True,
        write_timeout: float = 300.0,
        login_timeout: float | None = None,
        fsync_flags: bool = True,
    ) -> ImapHarness:
        cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
        ensure_certificate(cert, key, "localhost")
        root = tmp_path / f"store{len(made)}"
        store = await MailStore.open(root, fsync=False, fsync_flags=fsync_flags)
        rt = Runtime(
            store=store,
            directory=directory,
            auth=Authenticator(
                directory,
                policy=PlaintextPolicy(plaintext),
                throttle=throttle or LoginThrottle(fail_delay),
                protocol="imap",
            ),
            limiter=ConnectionLimiter(max_per_ip, max_per_user),
            tls_context=server_context(cert, key),
            max_message_size=max_message_size,
            idle_timeout=idle_timeout,
            login_timeout=min(60.0, idle_timeout) if login_timeout is None else login_timeout,
            write_timeout=write_timeout,
        )
        server = ImapServer(rt, [Endpoint(HOST, 0), Endpoint(HOST, 0, implicit_tls=True)])
        await server.start()
        h = ImapHarness(store, directory, server, cert, root)
        made.append(h)
        if user and directory.user(ALICE) is None:
            await h.add_user()
        elif user:
            found = directory.user(ALICE)
            assert found is not None
            h.users[ALICE] = found
        return h

    yield make
    for h in made:
        await h.server.stop(grace=1)
        await h.store.close()
    await responder.stop()
    await directory.close()


@pytest.fixture
async def imap(make_imap: Factory) -> ImapHarness:
    return await make_imap()


def ok(typ: Any, data: Any = None) -> Any:
    assert typ == "OK", (typ, data)
    return data
