"""nats-server's figures for Prometheus (services.ctl.natsmetrics, served by
``natsrun --ops-port``): Debian has no prometheus-nats-exporter, so the compose ``nats``
services translate the server's /varz and /jsz themselves (issue 17: the dashboards'
queue depth). Against a real nats-server under the real runner process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY

from mailcore.bus import names
from services.ctl import daemons
from services.ctl.natsmetrics import NatsMetrics, apply
from tests.conftest import fresh_bus

PENDING = re.compile(
    r'^postern_nats_consumer_pending\{consumer="store-delivery",stream="MAIL_INBOUND"\} '
    r"([0-9.e+]+)$",
    re.M,
)
MESSAGES = re.compile(r'^postern_nats_stream_messages\{stream="MAIL_INBOUND"\} ([0-9.e+]+)$', re.M)


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:
        return ""


async def test_the_runner_serves_the_inbound_backlog_on_metrics(tmp_path: Path) -> None:
    port, monitor, ops = daemons.free_port(), daemons.free_port(), daemons.free_port()
    conf = daemons.write_nats_config(
        tmp_path / "nats.conf",
        host="127.0.0.1",
        port=port,
        store_dir=tmp_path / "js",
        monitor_port=monitor,
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "services.ctl.natsrun", "--url", f"nats://127.0.0.1:{port}",
         "--store-dir", str(tmp_path / "js"), "--ops-port", str(ops),
         "--monitor-url", f"http://127.0.0.1:{monitor}", "--", *daemons.nats_command(conf)],
        env={**os.environ, "POSTERN_DATA": str(tmp_path / "data"), "POSTERN_LOG_LEVEL": "warning"},
    )  # fmt: skip
    try:
        bus = await fresh_bus(f"nats://127.0.0.1:{port}")
        try:
            for i in range(3):  # accepted mail the store has not taken yet
                await bus.js.publish(names.SUBJECT_INBOUND, b"mail %d" % i)
        finally:
            await bus.close()
        deadline = time.monotonic() + 60
        text = _scrape(ops)
        while (found := PENDING.search(text)) is None or found[1] != "3.0":
            assert time.monotonic() < deadline, text or "no /metrics"
            await asyncio.sleep(0.5)
            text = await asyncio.to_thread(_scrape, ops)
        assert re.search(r"^postern_nats_up 1\.0$", text, re.M), text
        messages = MESSAGES.search(text)
        assert messages and messages[1] == "3.0", text
        assert re.search(r"^postern_nats_connections [1-9]", text, re.M), text  # the runner's
        assert re.search(r"^postern_nats_jetstream_storage_max_bytes [1-9]", text, re.M), text
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(60)


async def test_a_silent_server_reads_as_down() -> None:
    figures = NatsMetrics(f"http://127.0.0.1:{daemons.free_port()}", timeout=2)
    assert await figures.read_once() is False
    assert figures.up is False
    assert REGISTRY.get_sample_value("postern_nats_up") == 0


def test_a_stream_gone_loses_its_samples() -> None:
    def jsz(*streams: str) -> dict[str, object]:
        detail = [{"name": s, "state": {"messages": 1, "bytes": 9}} for s in streams]
        return {"storage": 9, "account_details": [{"stream_detail": detail}]}

    apply({"connections": 2}, jsz("OLD_ONE", "KEPT"))
    assert REGISTRY.get_sample_value("postern_nats_stream_messages", {"stream": "OLD_ONE"}) == 1
    apply({"connections": 2}, jsz("KEPT"))
    assert REGISTRY.get_sample_value("postern_nats_stream_messages", {"stream": "OLD_ONE"}) is None
    assert REGISTRY.get_sample_value("postern_nats_stream_messages", {"stream": "KEPT"}) == 1
