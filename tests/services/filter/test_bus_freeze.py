"""A frozen nats-server (SIGSTOP for 15 s, then SIGCONT) while mail comes in: the filter
keeps publishing with the same Nats-Msg-Id instead of answering 451 after its hand-off
timeout, so no sender resends a message the bus stored, and the store delivers each
message once — the issue 19 #5 scenario, with a store consuming the stream."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from mailcore.mailstore import MailStore
from services.filter.app import FilterNode
from services.store.delivery import DeliveryConsumer
from tests.conftest import fresh_bus
from tests.services.filter.conftest import ALICE, RawClient, StartFilter, provision
from tests.support.daemons import NatsServer

FREEZE = 15.0
SENDERS = 6
PER_SENDER = 6


@pytest.fixture
async def own_bus(own_nats: NatsServer) -> AsyncIterator[Bus]:
    bus = await fresh_bus(own_nats.url)
    await (await provision(bus)).close()
    yield bus
    await bus.close()


def message(n: int) -> bytes:
    return (
        f"From: carol@remote.test\r\nTo: {ALICE}\r\nSubject: freeze {n}\r\n"
        f"Message-ID: <freeze-{n}@remote.test>\r\n\r\nbody of {n}\r\n"
    ).encode()


async def send_until_accepted(node: FilterNode, n: int, answers: list[str]) -> None:
    """As an MTA does: a 4xx (or a dropped connection) means try again later."""
    while True:
        try:
            client = await RawClient.connect(node.settings.smtp_port)
            try:
                await client.expect("EHLO client.test", 250)
                await client.expect("MAIL FROM:<carol@remote.test>", 250)
                await client.expect(f"RCPT TO:<{ALICE}>", 250)
                final = await client.send_message(message(n))
            finally:
                await client.close()
        except (ConnectionError, TimeoutError, AssertionError) as exc:
            final = f"(connection: {type(exc).__name__})"
        answers.append(final)
        if final.startswith("250 "):
            return
        assert not final.startswith("5"), final
        await asyncio.sleep(1.0)


async def test_a_frozen_bus_makes_no_duplicates(
    own_nats: NatsServer, own_bus: Bus, start_filter: StartFilter, tmp_path: Path
) -> None:
    # hand-off timeout far below the freeze: the old filter answered 451 after it
    node = await start_filter(bus_=own_bus, handoff_timeout=2.0, handoff_patience=60.0)
    store = await MailStore.open(tmp_path / "mail", fsync=False)
    consumer = DeliveryConsumer(own_bus, node.directory, store, batch=16)  # type: ignore[arg-type]
    stopping = asyncio.Event()
    delivery = asyncio.create_task(consumer.run(stopping))
    answers: list[str] = []
    try:

        async def sender(k: int) -> None:
            for i in range(PER_SENDER):
                await send_until_accepted(node, k * PER_SENDER + i, answers)
                await asyncio.sleep(0.3)

        senders = [asyncio.create_task(sender(k)) for k in range(SENDERS)]
        await asyncio.sleep(1.0)
        assert own_nats.proc is not None
        os.kill(own_nats.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(FREEZE)
        finally:
            os.kill(own_nats.proc.pid, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(*senders), 300)

        total = SENDERS * PER_SENDER
        assert sum(a.startswith("250 ") for a in answers) == total
        user = node.directory.user(ALICE)  # type: ignore[union-attr]
        assert user is not None

        async def subjects() -> list[bytes]:
            acct = await store.account(user.account_id)
            box = await acct.mailbox("INBOX")
            recs = await acct.fetch(box.id, (await acct.snapshot(box.id)).uids)
            out = []
            for rec in recs:
                with acct.open_message(rec) as fh:
                    out += [ln for ln in fh.read().split(b"\r\n") if ln.startswith(b"Subject:")]
            return out

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        got = await subjects()
        while len(set(got)) < total and loop.time() < deadline:
            await asyncio.sleep(0.5)
            got = await subjects()
        await asyncio.sleep(3)  # a late duplicate would arrive now
        got = await subjects()
        duplicates = len(got) - len(set(got))
        print(f"answers: {len(answers)}, not 250: {[a for a in answers if a[:3] != '250']}")
        print(f"delivered {len(got)} for {total} messages: {duplicates} duplicates")
        assert len(set(got)) == total  # every 250 delivered
        assert duplicates == 0
    finally:
        stopping.set()
        await asyncio.wait_for(delivery, 60)
        await store.close()
