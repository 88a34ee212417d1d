"""The disk under JetStream fills up (a small tmpfs): the filter answers 451, its
``/healthz`` says the bus is unavailable, and once space is freed acceptance resumes by
itself within seconds — mailctl up's watch (services.ctl.natswatch) re-enables JetStream
(SIGHUP) or restarts nats-server. Issue 19 #1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from mailcore.bus.setup import BusLimits
from services.ctl import daemons
from services.ctl.natswatch import NatsWatch
from services.filter.app import FilterNode
from tests.conftest import fresh_bus
from tests.services.filter.conftest import ALICE, RawClient, StartFilter, provision, stream_messages
from tests.support.daemons import NatsServer
from tests.support.smallfs import SmallFs, small_fs

MiB = 1024**2
LIMITS = BusLimits(
    inbound_max_bytes=4 * MiB,
    outbound_max_bytes=MiB,
    bodies_max_bytes=4 * MiB,
    mirror_max_bytes=MiB,
    dead_max_bytes=MiB,
)


@pytest.fixture
def full_disk_nats(tmp_path: Path) -> AsyncIterator[tuple[NatsServer, SmallFs]]:
    with small_fs(tmp_path / "natsfs", 48 * MiB) as fs:
        server = NatsServer(tmp_path / "nats")
        server.config = daemons.write_nats_config(
            tmp_path / "nats" / "nats.conf",
            host=server.host,
            port=server.port,
            store_dir=fs.path / "js",
        )
        server.start()
        try:
            yield server, fs
        finally:
            server.stop()


async def deliver(node: FilterNode, n: int) -> str:
    client = await RawClient.connect(node.settings.smtp_port)
    try:
        await client.expect("EHLO client.test", 250)
        await client.expect("MAIL FROM:<carol@remote.test>", 250)
        await client.expect(f"RCPT TO:<{ALICE}>", 250)
        body = f"Subject: disk {n}\r\nMessage-ID: <disk-{n}@remote.test>\r\n\r\n"
        return await client.send_message(body.encode() + (b"x" * 78 + b"\r\n") * 25)
    finally:
        await client.close()


async def test_acceptance_resumes_by_itself_once_space_is_back(
    full_disk_nats: tuple[NatsServer, SmallFs], start_filter: StartFilter
) -> None:
    server, fs = full_disk_nats
    bus: Bus = await fresh_bus(server.url, LIMITS)
    await (await provision(bus)).close()
    node = await start_filter(bus_=bus, handoff_timeout=2.0, handoff_patience=0)
    gate = node.gate
    assert gate is not None

    async def restart() -> None:
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)

    watch = NatsWatch(
        bus.js,
        fs.path,
        pid=lambda: server.proc.pid if server.proc else None,
        restart=restart,
        interval=0.5,
        grace=2.0,
        min_free=2 * MiB,
    )
    stopping = asyncio.Event()
    watching = asyncio.create_task(watch.run(stopping))
    accepted: list[str] = []
    try:
        first = await deliver(node, 0)
        assert first.startswith("250 "), first
        accepted.append(first.rsplit(" ", 1)[1])

        fs.fill(leave=0)
        n = 1
        answer = await deliver(node, n)
        while answer.startswith("250 "):  # JetStream's current block may take a few
            accepted.append(answer.rsplit(" ", 1)[1])
            n += 1
            assert n < 500, "the full disk never refused a message"
            answer = await deliver(node, n)
        assert answer.startswith("451 "), answer  # temporary, never 5xx
        while gate.bus_available:  # /healthz check "bus" (mailcore.metrics OpsServer)
            await asyncio.sleep(0.1)

        fs.free()
        freed = time.monotonic()
        answer = await deliver(node, n)
        while not answer.startswith("250 "):
            assert answer.startswith("451 "), answer
            assert time.monotonic() - freed < 120, "acceptance did not resume"
            await asyncio.sleep(0.5)
            answer = await deliver(node, n)
        resumed = time.monotonic() - freed
        accepted.append(answer.rsplit(" ", 1)[1])
        print(
            f"first 250 {resumed:.1f} s after space was freed; watch: "
            f"{watch.reloads} reloads, {watch.restarts} restarts"
        )
        while not gate.bus_available:
            await asyncio.sleep(0.1)
        stored = {m.id for m in await stream_messages(bus)}
        assert set(accepted) <= stored  # every 250 survived the full disk and the recovery
    finally:
        stopping.set()
        await asyncio.wait_for(watching, 30)
        await bus.close()
