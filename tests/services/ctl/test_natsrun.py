"""The compose nats service's runner (services.ctl.natsrun): a real nats-server whose
JetStream store fills up (a small tmpfs) stores again by itself once space is freed, with
no one restarting the container; a server that dies by itself ends the runner, so Docker's
restart policy takes over. Issue 17 (compose), issue 19 #1 (disk full)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from mailcore.bus.probe import can_store
from mailcore.bus.setup import BusLimits
from services.ctl import daemons
from services.ctl.natsrun import NatsRunner
from tests.conftest import fresh_bus
from tests.support.smallfs import small_fs

MiB = 1024**2
LIMITS = BusLimits(
    inbound_max_bytes=4 * MiB,
    outbound_max_bytes=MiB,
    bodies_max_bytes=4 * MiB,
    mirror_max_bytes=MiB,
    dead_max_bytes=MiB,
)


def _runner(tmp_path: Path, store_dir: Path) -> NatsRunner:
    port = daemons.free_port()
    conf = daemons.write_nats_config(
        tmp_path / "nats.conf", host="127.0.0.1", port=port, store_dir=store_dir
    )
    return NatsRunner(
        daemons.nats_command(conf),
        f"nats://127.0.0.1:{port}",
        store_dir,
        interval=0.5,
        grace=2.0,
        min_free=2 * MiB,
    )


async def test_jetstream_stores_again_after_the_disk_had_room(tmp_path: Path) -> None:
    with small_fs(tmp_path / "natsfs", 48 * MiB) as fs:
        runner = _runner(tmp_path, fs.path / "js")
        stopping = asyncio.Event()
        running = asyncio.create_task(runner.run(stopping))
        bus = await fresh_bus(runner.url, LIMITS)  # declares the probe stream
        try:
            while runner.watch is None:  # the watch starts after the first probe write
                await asyncio.sleep(0.1)
            fs.fill(leave=0)
            n = 0
            while await can_store(bus.js, timeout=2.0):
                # JetStream's current block may take a few more writes
                with contextlib.suppress(Exception):  # refused once the disk is full
                    await bus.js.publish("mail.inbound.x", b"x" * 64 * 1024, timeout=2.0)
                n += 1
                assert n < 500, "the full disk never stopped JetStream storing"
            fs.free()
            freed = time.monotonic()
            while not await can_store(bus.js, timeout=2.0):
                assert time.monotonic() - freed < 120, "JetStream never stored again"
                await asyncio.sleep(0.5)
            assert runner.watch.reloads + runner.watch.restarts >= 1
            assert not running.done()  # the runner itself stayed up throughout
        finally:
            await bus.close()
            stopping.set()
            status = await asyncio.wait_for(running, 60)
        assert runner.pid() is None
        assert status in (0, -15)  # stopped on request


async def test_a_server_that_dies_ends_the_runner(tmp_path: Path) -> None:
    runner = _runner(tmp_path, tmp_path / "js")
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run(stopping))
    while runner.pid() is None:
        await asyncio.sleep(0.05)
    pid = runner.pid()
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    status = await asyncio.wait_for(running, 60)
    assert status != 0  # a failure: Docker's restart policy restarts the container
