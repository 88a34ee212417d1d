"""The peer's NATS down, for real (nats-servers, a store and its mirror as processes): the
mirror logs one warning line per outage (``peer store-b unreachable, retrying in 0.5s``),
retries with backoff and no traceback, and one line when the peer is back. Its /healthz
(liveness, compose's health check) stays 200 meanwhile — this side works, queueing — and
shows ``links: {peer: false}``; its /readyz is 503 with ``peer: false``, and
``postern_mirror_peer_up`` is 0 until the peer is back. Before, every
retry logged nats-py's traceback and the sink's failure, every second, and /healthz was
503 for a peer outage (the local mirror container marked unhealthy)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mailcore.bus import mirror as queue
from services.ctl import daemons
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import Side, mailctl, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GUARD = 120.0  # seconds: a hang guard for each wait, not a timing assertion
DOWN, BACK = "peer store-b unreachable, retrying in", "peer store-b reachable again"


class LoneSide(Side):
    """A store and its mirror whose peer runs nothing but its nats-server."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, "store-a", "store-b")
        self.mirror_ops = daemons.free_port()

    def env(self) -> dict[str, str]:
        return {**super().env(), "POSTERN_MIRROR_OPS_PORT": str(self.mirror_ops)}


def health(port: int, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def peer_up(port: int) -> str | None:
    """The value of ``postern_mirror_peer_up{peer="store-b"}`` on the mirror's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(r'^postern_mirror_peer_up\{peer="store-b"\} (\S+)$', text, re.M)
    return found.group(1) if found else None


def count(side: Side, text: str) -> int:
    return side.log.read_text().count(text)


def quiet(side: Side) -> None:
    """No traceback, no nats-py error line, no per-retry warnings of the loops behind."""
    log = side.log.read_text()
    for noise in ("Traceback", "nats: encountered error", "sink failed", "peer link error"):
        assert noise not in log, f"{noise!r} in the log:\n{log[-4000:]}"


async def test_peer_down_is_one_line_with_backoff_and_one_when_back(tmp_path: Path) -> None:
    a, peer = LoneSide(tmp_path), Side(tmp_path, "store-b", "store-a")
    a.nats.start()
    peer.nats.start()
    a.peer_url = peer.nats.url
    bus_a, bus_b = await fresh_bus(a.nats.url), await fresh_bus(peer.nats.url)
    await queue.declare(bus_b.js, "store-a", 256 * 1024**2)  # as the peer's mirror would
    await bus_b.close()
    peer.nats.stop()

    def status_is(check: Any) -> Any:
        async def ok() -> bool:
            return bool(check(await queue.read_status(bus_a.js, "store-b")))

        return ok

    retried = status_is(lambda st: int(st.get("peer_retries") or 0) >= 3)
    linked = status_is(lambda st: st.get("peer_link") is True)
    try:
        # --- the peer down from the start --------------------------------------------------
        a.start()
        await until(retried, "three tries at the peer", [a], GUARD)
        assert count(a, DOWN) == 1, a.log.read_text()[-4000:]
        code, body = await asyncio.to_thread(health, a.mirror_ops)
        assert code == 200 and body["checks"] == {"nats": True, "store": True}, body
        assert body["links"] == {"peer": False}, body
        code, body = await asyncio.to_thread(health, a.mirror_ops, "/readyz")
        assert code == 503 and body["checks"]["peer"] is False, body
        assert await asyncio.to_thread(peer_up, a.mirror_ops) == "0.0"
        st = await queue.read_status(bus_a.js, "store-b")
        assert st["peer_down_since"] and "Connection refused" in st["last_error"], st
        text = await mailctl("mirror", "status", "--nats", a.nats.url, "--peer", "store-b")
        assert re.search(r"link DOWN \(unreachable since [\d:]+, \d+ tries\)", text), text
        quiet(a)
        # --- back ----------------------------------------------------------------------------
        peer.nats.start()
        await until(linked, "the link up", [a], GUARD)
        assert count(a, BACK) == 1 and count(a, DOWN) == 1
        code, body = await asyncio.to_thread(health, a.mirror_ops)
        assert code == 200 and body["links"] == {"peer": True}, body
        code, body = await asyncio.to_thread(health, a.mirror_ops, "/readyz")
        assert code == 200 and body["checks"] == {"nats": True, "store": True, "peer": True}

        async def reported_up() -> bool:  # the gauge follows the link within a report
            return await asyncio.to_thread(peer_up, a.mirror_ops) == "1.0"

        await until(reported_up, "postern_mirror_peer_up 1", [a], GUARD)
        # --- lost while linked, then back again ---------------------------------------------
        peer.nats.stop()
        await until(retried, "three tries at the lost peer", [a], GUARD)
        assert count(a, DOWN) == 2 and count(a, BACK) == 1, a.log.read_text()[-4000:]
        quiet(a)
        peer.nats.start()
        await until(linked, "the link up again", [a], GUARD)
        assert count(a, BACK) == 2 and count(a, DOWN) == 2
        quiet(a)
    finally:
        await bus_a.close()
        a.reap()
        a.nats.stop()
        peer.nats.stop()
