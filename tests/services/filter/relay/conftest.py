"""The relay on a real nats-server, with a real store behind it (DSNs land in INBOXes)
and aiosmtpd servers on 127.0.0.x as the remote MXs (through the route table)."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus, connect
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.bus.setup import declare_all, relay_consumer
from mailcore.config import RelaySettings
from mailcore.directory import Directory, User
from mailcore.mailstore import MailStore
from services.filter.relay.app import RelayNode
from services.filter.relay.routes import MxLookup, dns_mx
from services.filter.relay.worker import RelayWorker
from services.store.delivery import DeliveryConsumer
from tests.conftest import TEST_LIMITS
from tests.services.filter.relay.sink import Sink
from tests.support.daemons import NatsServer

LOCAL = "postern.test"
ALICE = f"alice@{LOCAL}"
REMOTE = "remote.example"
ACK_WAIT = 2.0


def message(subject: str = "hello", sender: str = ALICE, to: str = f"bob@{REMOTE}") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{new_message_id()}@{LOCAL}>\r\nDate: Mon, 7 Dec 2026 06:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello from Postern.\r\n"
    ).encode()


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class RelayEnv:
    bus: Bus
    directory: Directory
    store: MailStore
    alice: User
    tmp: Path
    url: str
    sinks: list[Sink] = field(default_factory=list)
    relays: list[tuple[RelayNode, asyncio.Task[None], asyncio.Event, Bus]] = field(
        default_factory=list
    )

    def sink(self, host: str = "127.0.0.2", **kw: Any) -> Sink:
        s = Sink(host, **kw).start()
        self.sinks.append(s)
        return s

    def settings(self, routes: dict[str, str], **overrides: Any) -> RelaySettings:
        values: dict[str, Any] = {
            "data": self.tmp / "relay",
            "nats_url": "nats://unused",
            "hostname": "relay.postern.test",
            "relay_routes": routes,
            "relay_retry_schedule": [0.2],
            "relay_connect_timeout": 5.0,
            "relay_command_timeout": 20.0,
            "relay_dkim": True,
        }
        values.update(overrides)
        return RelaySettings(**values)

    async def start_relay(
        self, routes: dict[str, str], *, lookup: MxLookup = dns_mx, **overrides: Any
    ) -> RelayWorker:
        # Each relay its own connection, as each relay process has.
        bus = await connect(self.url, "relay-test", wait=5)
        node = RelayNode(self.settings(routes, **overrides), bus, lookup=lookup)
        worker = await node.start()
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        await eventually(lambda: worker.running)
        self.relays.append((node, task, stopping, bus))
        return worker

    async def submit(
        self, recipients: list[str], body: bytes | None = None, *, sender: str = ALICE, **kw: Any
    ) -> MailMessage:
        msg = MailMessage(
            id=new_message_id(), mail_from=sender, recipients=recipients, size=0, **kw
        )
        bodies = await self.bus.js.object_store(names.OBJ_BODIES)
        await publish_mail(
            self.bus.js, bodies, names.SUBJECT_OUTBOUND, msg, body or message(sender=sender)
        )
        return msg

    async def outbound(self) -> int:
        return int((await self.bus.js.stream_info(names.STREAM_OUTBOUND)).state.messages)

    async def inbound(self) -> int:
        return int((await self.bus.js.stream_info(names.STREAM_INBOUND)).state.messages)

    async def inbox(self, user: User | None = None) -> list[email.message.EmailMessage]:
        acct = await self.store.account((user or self.alice).account_id)
        mb = await acct.mailbox("INBOX")
        out = []
        for rec in await acct.fetch(mb.id, (await acct.snapshot(mb.id)).uids):
            with acct.open_message(rec) as fh:
                parsed = email.message_from_bytes(fh.read(), policy=email.policy.default)
                assert isinstance(parsed, email.message.EmailMessage)
                out.append(parsed)
        return out

    async def inbox_has(self, n: int) -> bool:
        return len(await self.inbox()) >= n


@pytest.fixture
async def relay_env(bus: Bus, nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[RelayEnv]:
    # A short ack wait, so a dead relay's message comes round in seconds.
    config = relay_consumer(TEST_LIMITS)
    config.ack_wait = ACK_WAIT
    await bus.js.delete_consumer(names.STREAM_OUTBOUND, names.CONSUMER_RELAY)
    await bus.js.add_consumer(names.STREAM_OUTBOUND, config)
    directory = await Directory.open(bus.js)
    await directory.add_domain(LOCAL)
    alice = await directory.add_user(ALICE, "password-alice")
    store = await MailStore.open(tmp_path / "mail")
    consumer = DeliveryConsumer(bus, directory, store, batch=64, retry_delay=0.2)
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(stopping))
    await eventually(lambda: consumer.running)
    env = RelayEnv(bus, directory, store, alice, tmp_path, nats_server.url)
    yield env
    for node, rtask, rstop, rbus in env.relays:
        rstop.set()
        await asyncio.wait_for(rtask, 30)
        await node.close()
        await rbus.close()
    for s in env.sinks:
        s.stop()
    stopping.set()
    await asyncio.wait_for(task, 30)
    await store.close()
    await directory.close()
    await bus.js.delete_consumer(names.STREAM_OUTBOUND, names.CONSUMER_RELAY)
    await declare_all(bus.js, TEST_LIMITS)
