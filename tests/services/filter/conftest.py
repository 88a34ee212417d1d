"""Fixtures for the filter: a directory with users, filter nodes on free ports, bus readers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailcore.bus import names
from mailcore.bus.claimcheck import load_body
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, decode_mail
from mailcore.config import FilterSettings
from mailcore.directory import Directory
from mailcore.tls import client_context_trusting
from services.ctl.daemons import free_port
from services.filter.app import FilterNode
from services.filter.dkim_verify import TxtLookup
from services.store.auth_rpc import AuthResponder

DOMAIN = "example.test"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
PASSWORD = "correct horse battery"
ALIAS = f"sales@{DOMAIN}"


@dataclass
class Accounts:
    directory: Directory
    alice: str = ALICE
    bob: str = BOB
    password: str = PASSWORD
    alias: str = ALIAS


async def provision(bus: Bus) -> Directory:
    directory = await Directory.open(bus.js, watch=False)
    await directory.add_domain(DOMAIN)
    await directory.add_user(ALICE, PASSWORD)
    await directory.add_user(BOB, PASSWORD)
    await directory.add_alias(ALIAS, [ALICE])
    return directory


@pytest.fixture
async def accounts(bus: Bus) -> AsyncIterator[Accounts]:
    """The test accounts, and the store's auth responder answering SMTP AUTH (the filter
    may not read the password hashes: services/filter/auth_check.py) on the same bus."""
    directory = await provision(bus)
    async with store_auth(bus):
        yield Accounts(directory)


@contextlib.asynccontextmanager
async def store_auth(bus: Bus) -> AsyncIterator[AuthResponder]:
    """The store's auth responder (services/store/auth_rpc.py) in this process, on ``bus``,
    without the rest of the store."""
    directory = await Directory.open(bus.js, passwords=True)
    responder = AuthResponder(bus, directory)
    await responder.start()
    try:
        yield responder
    finally:
        await responder.stop()
        await directory.close()


def filter_settings(tmp_path: Path, **overrides: Any) -> FilterSettings:
    values: dict[str, Any] = {
        "data": tmp_path / "filter",
        "hostname": "mx.example.test",
        "listen_host": "127.0.0.1",
        "smtp_port": free_port(),
        "submission_port": free_port(),
        "submissions_port": free_port(),
        "spamd_enabled": False,
        "clamd_enabled": False,
        "auth_fail_delay": 0.0,
        "handoff_timeout": 5.0,
        "scan_timeout": 20.0,
        "dkim_verify": False,  # no DNS from the test suite; DKIM tests give their own lookup
    }
    values.update(overrides)
    return FilterSettings(**values)


StartFilter = Callable[..., Awaitable[FilterNode]]


@pytest.fixture
async def start_filter(bus: Bus, tmp_path: Path) -> AsyncIterator[StartFilter]:
    """``await start_filter(**settings)``: a running filter node on this test's bus."""
    nodes: list[FilterNode] = []

    async def start(
        bus_: Bus | None = None, dkim_lookup: TxtLookup | None = None, **overrides: Any
    ) -> FilterNode:
        settings = filter_settings(tmp_path, **overrides)
        node = FilterNode(settings, bus_ or bus, fill_refresh=0.2, dkim_lookup=dkim_lookup)
        await node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        stopping = asyncio.create_task(node.stop())
        if not (await asyncio.wait({stopping}, timeout=40))[0]:
            dump_tasks()  # a stop that hangs is a bug: show where, and fail
            raise AssertionError("the filter node did not stop within 40 s")
        stopping.result()


def dump_tasks() -> None:
    """Every task's stack, for a teardown that hangs."""
    import sys

    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}: {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


@pytest.fixture
async def mx(start_filter: StartFilter, accounts: Accounts) -> FilterNode:
    """A filter with scanners off and the test accounts in its directory."""
    return await start_filter()


def client_tls(node: FilterNode) -> ssl.SSLContext:
    return client_context_trusting(node.settings.cert_path)


async def stream_messages(bus: Bus, stream: str = names.STREAM_INBOUND) -> list[MailMessage]:
    """Every message in ``stream`` (read by sequence; nothing is consumed)."""
    info = await bus.js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        try:
            raw = await bus.js.get_msg(stream, seq)
        except Exception:
            continue
        out.append(decode_mail(raw.data or b""))
    return out


async def message_body(bus: Bus, msg: MailMessage) -> bytes:
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    return await load_body(bodies, msg)


async def wait_for_messages(
    bus: Bus, count: int, stream: str = names.STREAM_INBOUND, timeout: float = 30.0
) -> list[MailMessage]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await stream_messages(bus, stream)
        if len(found) >= count or loop.time() > deadline:
            return found
        await asyncio.sleep(0.1)


class RawClient:
    """A raw SMTP conversation over a socket, for the framing tests smtplib cannot do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None
    ) -> RawClient:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        client = cls(reader, writer)
        client.greeting = await client.reply()
        return client

    greeting: list[str]

    async def starttls(self, tls: ssl.SSLContext) -> None:
        assert (await self.command("STARTTLS"))[-1].startswith("220")
        await self.writer.start_tls(tls)

    async def reply(self, timeout: float = 30.0) -> list[str]:
        """One complete (possibly multi-line) reply."""
        lines = []
        async with asyncio.timeout(timeout):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise ConnectionError("closed")
                text = line.decode().rstrip("\r\n")
                lines.append(text)
                if len(text) < 4 or text[3] != "-":
                    return lines

    async def code(self, timeout: float = 30.0) -> int:
        return int((await self.reply(timeout))[-1][:3])

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def command(self, line: str | bytes) -> list[str]:
        raw = line.encode() if isinstance(line, str) else line
        self.writer.write(raw + b"\r\n")
        return await self.reply()

    async def expect(self, line: str | bytes, code: int) -> str:
        """Send a command; assert the reply code; return the last reply line."""
        reply = await self.command(line)
        assert int(reply[-1][:3]) == code, (line, reply)
        return reply[-1]

    async def send_message(self, data: bytes) -> str:
        """DATA, the dot-stuffed ``data`` and the terminator; the final reply line."""
        await self.expect("DATA", 354)
        stuffed = b"".join(
            (b"." + line if line.startswith(b".") else line) + b"\r\n"
            for line in data.split(b"\r\n")[:-1]
        )
        self.writer.write(stuffed + b".\r\n")
        return (await self.reply())[-1]

    async def login(self, user: str, password: str) -> str:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return (await self.command(f"AUTH PLAIN {token}"))[-1]

    async def closed(self, timeout: float = 10.0) -> bool:
        async with asyncio.timeout(timeout):
            return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
