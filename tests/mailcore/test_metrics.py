"""The ops endpoint: /metrics in Prometheus format, /healthz reflecting every liveness
check, /readyz every check (links to what the process does not own too)."""

from __future__ import annotations

import asyncio
import json

from mailcore import metrics
from mailcore.metrics import OpsServer


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_and_health() -> None:
    ops = OpsServer("127.0.0.1", 0)
    healthy = {"value": True}
    ops.add_check("thing", lambda: healthy["value"])

    async def async_check() -> bool:
        return True

    ops.add_check("other", async_check)
    await ops.start()
    try:
        metrics.SMTP_ACCEPTED.labels("smtp").inc()
        status, body = await _get(ops.port, "/metrics")
        assert status == 200
        assert b"postern_smtp_accepted_total" in body
        status, body = await _get(ops.port, "/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "checks": {"thing": True, "other": True}}
        healthy["value"] = False
        status, body = await _get(ops.port, "/healthz")
        assert status == 503
        assert json.loads(body)["checks"]["thing"] is False
        status, body = await _get(ops.port, "/readyz")
        assert status == 503 and json.loads(body)["status"] == "not ready"
        status, _ = await _get(ops.port, "/nope")
        assert status == 404
    finally:
        await ops.stop()


async def test_a_link_check_fails_readiness_not_liveness() -> None:
    """A peer away (``liveness=False``) leaves /healthz 200, shown under ``links``."""
    ops = OpsServer("127.0.0.1", 0)
    peer = {"up": False}
    ops.add_check("store", lambda: True)
    ops.add_check("peer", lambda: peer["up"], liveness=False)
    await ops.start()
    try:
        status, body = await _get(ops.port, "/healthz")
        assert status == 200
        assert json.loads(body) == {
            "status": "ok",
            "checks": {"store": True},
            "links": {"peer": False},
        }
        status, body = await _get(ops.port, "/readyz")
        assert status == 503
        assert json.loads(body) == {
            "status": "not ready",
            "checks": {"store": True, "peer": False},
        }
        peer["up"] = True
        status, body = await _get(ops.port, "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
    finally:
        await ops.stop()
