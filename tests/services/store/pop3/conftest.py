"""A real POP3 server for the tests: real NATS directory, real mail store (SQLite and
files in a temp dir), real TLS with a certificate made for the test, both listeners on
free loopback ports. ``poplib`` is blocking, so client code runs in a thread
(``await pop.run(fn)``) while the server keeps serving on the test's event loop."""

from __future__ import annotations

import asyncio
import poplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailcore.bus.connect import Bus
from mailcore.config import PlaintextAuth
from mailcore.directory import Directory, User
from mailcore.mailstore import MailStore
from mailcore.tls import client_context_trusting, ensure_certificate, server_context
from services.store.auth import Authenticator, ConnectionLimiter, LoginThrottle, PlaintextPolicy
from services.store.pop3.lock import MaildropLocks
from services.store.pop3.server import Endpoint, Pop3Server
from services.store.pop3.session import Pop3Env

T = TypeVar("T")
HOST = "127.0.0.1"
PASSWORD = "correct horse battery"


def message(n: int, body: bytes = b"") -> bytes:
    return (
        b"From: sender@example.net\r\nTo: alice@example.com\r\n"
        b"Subject: message %d\r\nMessage-ID: <m%d@example.net>\r\n\r\n" % (n, n)
    ) + (body or b"Body of message %d.\r\nSecond line.\r\n" % n)


@dataclass
class Pop3Harness:
    store: MailStore
    directory: Directory
    server: Pop3Server
    cert: Path
    root: Path
    users: dict[str, User] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.server.port(implicit_tls=False)

    @property
    def pop3s_port(self) -> int:
        return self.server.port(implicit_tls=True)

    @property
    def client_tls(self) -> ssl.SSLContext:
        return client_context_trusting(self.cert)

    async def add_user(self, address: str = "alice@example.com") -> User:
        if self.directory.domain(address.split("@")[1]) is None:
            await self.directory.add_domain(address.split("@")[1])
        user = await self.directory.add_user(address, PASSWORD)
        self.users[address] = user
        return user

    async def inbox(self, user: User) -> tuple[Any, int]:
        acct = await self.store.account(user.account_id)
        return acct, (await acct.mailbox("INBOX")).id

    async def deliver(self, user: User, *messages: bytes) -> list[int]:
        acct, inbox = await self.inbox(user)
        return [(await acct.append(inbox, m)).uid for m in messages]

    async def uids(self, user: User) -> list[int]:
        acct, inbox = await self.inbox(user)
        return list((await acct.snapshot(inbox)).uids)

    async def flags(self, user: User) -> dict[int, frozenset[str]]:
        acct, inbox = await self.inbox(user)
        snap = await acct.snapshot(inbox)
        return dict(zip(snap.uids, snap.flags, strict=True))

    def connect(self, *, tls: bool = False) -> poplib.POP3:
        """A poplib client (call from a thread: poplib blocks)."""
        if tls:
            return poplib.POP3_SSL(HOST, self.pop3s_port, context=self.client_tls, timeout=30)
        return poplib.POP3(HOST, self.port, timeout=30)

    def login(self, address: str = "alice@example.com") -> poplib.POP3:
        c = self.connect()
        c.user(address)
        c.pass_(PASSWORD)
        return c

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wait_for(asyncio.to_thread(fn), 120)

    async def wait_idle(self) -> None:
        """Until the server has no open session (a dropped client is noticed)."""
        await self.wait_idle_except(0)

    async def wait_idle_except(self, sessions: int) -> None:
        """Until at most ``sessions`` sessions are open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while self.server.open_sessions > sessions:
            assert loop.time() < deadline, "POP3 sessions still open"
            await asyncio.sleep(0.01)

    async def restart(self) -> None:
        """Stop the server and close the engine, then open both again on the same data."""
        env = self.server.env
        await self.server.stop()
        await self.store.close()
        self.store = await MailStore.open(self.root, fsync=False)
        env.store = self.store
        self.server = Pop3Server(env, [Endpoint(HOST, 0), Endpoint(HOST, 0, implicit_tls=True)])
        await self.server.start()


Factory = Callable[..., Awaitable[Pop3Harness]]


@pytest.fixture(scope="session")
def test_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    ensure_certificate(cert, key, "localhost")
    return cert, key


@pytest.fixture
async def make_pop3(
    bus: Bus, tmp_path: Path, test_cert: tuple[Path, Path]
) -> AsyncIterator[Factory]:
    made: list[Pop3Harness] = []
    directory = await Directory.open(bus.js, passwords=True)

    async def factory(
        *,
        plaintext: PlaintextAuth = "loopback",
        idle_timeout: float = 600.0,
        max_bad_commands: int = 10,
        throttle: LoginThrottle | None = None,
        tls: bool = True,
        max_per_ip: int = 100,
        max_per_user: int = 50,
        write_timeout: float = 300.0,
        login_timeout: float | None = None,
    ) -> Pop3Harness:
        root = tmp_path / f"mailstore{len(made)}"
        store = await MailStore.open(root, fsync=False)
        cert, key = test_cert
        env = Pop3Env(
            authenticator=Authenticator(
                directory,
                policy=PlaintextPolicy(plaintext),
                throttle=throttle or LoginThrottle(0.01),
                protocol="pop3",
            ),
            locks=MaildropLocks(),
            store=store,
            limiter=ConnectionLimiter(max_per_ip, max_per_user),
            tls_context=server_context(cert, key) if tls else None,
            idle_timeout=idle_timeout,
            login_timeout=min(60.0, idle_timeout) if login_timeout is None else login_timeout,
            max_bad_commands=max_bad_commands,
            write_timeout=write_timeout,
        )
        endpoints = [Endpoint(HOST, 0)]
        if tls:
            endpoints.append(Endpoint(HOST, 0, implicit_tls=True))
        server = Pop3Server(env, endpoints)
        await server.start()
        h = Pop3Harness(store, directory, server, cert, root)
        made.append(h)
        return h

    yield factory
    for h in made:
        await h.server.stop(grace=1)
        await h.store.close()
    await directory.close()


@pytest.fixture
async def pop(make_pop3: Factory) -> Pop3Harness:
    return await make_pop3()


class RawClient:
    """Bytes on a socket, for what poplib will not send (garbage, pipelining, AUTH)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, tls: ssl.SSLContext | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=tls, limit=2**20)
        c = cls(reader, writer)
        greeting = await c.line()
        assert greeting.startswith(b"+OK"), greeting
        return c

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 30) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)

    async def cmd(self, line: bytes) -> bytes:
        await self.send(line + b"\r\n")
        return await self.line()

    async def multiline(self, timeout: float = 30) -> list[bytes]:
        """Lines up to the terminating ".", byte-stuffing left in place."""
        out = []
        while (ln := await self.line(timeout)) != b".\r\n":
            out.append(ln)
        return out

    async def eof(self, timeout: float = 30) -> bool:
        data = await asyncio.wait_for(self.reader.read(), timeout)
        return data == b""

    async def login(self, address: str = "alice@example.com") -> None:
        assert (await self.cmd(b"USER " + address.encode())).startswith(b"+OK")
        reply = await self.cmd(b"PASS " + PASSWORD.encode())
        assert reply.startswith(b"+OK"), reply

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
