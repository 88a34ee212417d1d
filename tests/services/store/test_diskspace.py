"""The store on a nearly full file system (a small tmpfs): the probe counts short writes as
failures, delivery pauses below the free-space threshold and resumes above twice it, and
``/healthz`` of the real store process says so."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from mailcore.tls import ensure_certificate
from services.ctl.daemons import free_port
from services.store.diskspace import SpaceGuard, probe_write
from tests.services.store.imap.test_process import StoreProcess
from tests.support.daemons import NatsServer
from tests.support.smallfs import small_fs

MiB = 1024 * 1024


def test_a_short_write_is_no_room(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", 4 * MiB) as fs:
        fs.fill(leave=44 * 1024)
        assert fs.available <= 44 * 1024
        assert not probe_write(fs.path)  # the kernel takes 44 KiB of the 1 MiB: not room
        assert not (fs.path / f".probe-{os.getpid()}").exists()
        fs.free()
        assert probe_write(fs.path)


def test_the_guard_resumes_only_above_twice_the_threshold(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", 8 * MiB) as fs:
        guard = SpaceGuard(fs.path, 2 * MiB)
        fs.fill(leave=MiB)
        assert guard.low() and not guard.room_again()
        fs.free()
        fs.fill(leave=3 * MiB)  # above the pause mark, below the resume mark
        assert not guard.low() and not guard.room_again()
        fs.free()
        assert guard.room_again()


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))


async def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_store_pauses_on_a_full_disk_and_health_tells(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    directory = await Directory.open(bus.js)
    await directory.add_domain("example.com")
    await directory.add_user("alice@example.com", "password-alice")
    await directory.close()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ensure_certificate(cert, key, "localhost")
    with small_fs(tmp_path / "data", 32 * MiB) as fs:
        ops = free_port()
        env = {
            **os.environ,
            "POSTERN_DATA": str(fs.path),
            "POSTERN_NATS_URL": nats_server.url,
            "POSTERN_IMAP_PORT": str(free_port()),
            "POSTERN_IMAPS_PORT": str(free_port()),
            "POSTERN_POP3_PORT": "0",
            "POSTERN_POP3S_PORT": "0",
            "POSTERN_OPS_PORT": str(ops),
            "POSTERN_TLS_CERT": str(cert),
            "POSTERN_TLS_KEY": str(key),
            "POSTERN_DELIVERY_MIN_FREE_BYTES": str(4 * MiB),
            "POSTERN_LOG_FORMAT": "json",
        }
        store = StoreProcess(env, tmp_path / "store.log")
        await asyncio.to_thread(store.start)
        try:

            async def healthy() -> bool:
                return bool((await asyncio.to_thread(_health, ops))["checks"].get("storage"))

            async def unhealthy() -> bool:
                return not await healthy()

            await _until(healthy)
            fs.fill(leave=44 * 1024)  # "100 %" full: 44 KiB left
            await _until(unhealthy)
            bodies = await bus.js.object_store(names.OBJ_BODIES)
            msg = MailMessage(
                id=new_message_id(),
                mail_from="sender@example.net",
                recipients=["alice@example.com"],
                size=0,
            )
            body = b"Subject: waits for room\r\n\r\nhello\r\n"
            await publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, body)

            async def pending() -> int:
                info = await bus.js.consumer_info(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
                return int(info.num_pending + info.num_ack_pending)

            # Paused: the message stays on the bus; health stays unhealthy.
            await asyncio.sleep(3)
            assert await pending() == 1
            assert await unhealthy()
            # Space between the pause and the resume marks: still paused (hysteresis).
            fs.free()
            fs.fill(leave=6 * MiB)
            await asyncio.sleep(7)  # more than one probe interval (5 s)
            assert await pending() == 1
            fs.free()

            async def delivered() -> bool:
                return await pending() == 0

            await _until(delivered)
            await _until(healthy)
        finally:
            await asyncio.to_thread(store.stop)
