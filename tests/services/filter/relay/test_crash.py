"""A relay process killed (SIGKILL) in the middle of a transaction: the message comes
round to the next relay after the ack wait and is delivered once; the interrupted
transaction is counted as a possible duplicate (RFC 5321 §6.1)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from services.ctl.daemons import free_port
from tests.services.filter.relay.conftest import ACK_WAIT, REMOTE, RelayEnv, eventually

ROOT = Path(__file__).resolve().parents[4]


def _relay(env: RelayEnv, ops: int, routes: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "POSTERN_NATS_URL": env.url,
        "POSTERN_DATA": str(env.tmp / "relay"),
        "POSTERN_HOSTNAME": "relay.postern.test",
        "POSTERN_RELAY_OPS_PORT": str(ops),
        "POSTERN_RELAY_ROUTES": json.dumps(routes),
        "POSTERN_RELAY_ACK_WAIT": str(ACK_WAIT),
        "POSTERN_RELAY_RETRY_SCHEDULE": "[0.2]",
        "POSTERN_LOG_FORMAT": "json",
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.filter.relay"],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return str(r.read().decode())
    except OSError:
        return None


def _metric(ops: int, name: str) -> float:
    text = _get(f"http://127.0.0.1:{ops}/metrics") or ""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def _healthy(ops: int) -> bool:
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{ops}/healthz") is not None


async def test_kill_9_mid_transaction_then_delivered_once(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink()
    sink.hold.clear()  # the first DATA waits: the relay is mid-transaction
    routes = {REMOTE: sink.address}
    log = env.tmp / "relay.log"
    first_ops, second_ops = free_port(), free_port()
    first = _relay(env, first_ops, routes, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        await eventually(lambda: _healthy(first_ops), timeout=60)
        await env.submit([f"bob@{REMOTE}"])
        await eventually(sink.holding.is_set, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        # The sink notices the client is gone; its DATA reply then has no one to go to,
        # so it takes nothing (as an MTA that never got to answer 250).
        await eventually(lambda: sink.held.transport is None or sink.held.transport.is_closing())
        sink.hold.set()
        assert sink.messages == []
        second = _relay(env, second_ops, routes, log)
        await eventually(lambda: _healthy(second_ops), timeout=60)
        await eventually(lambda: len(sink.messages) == 1, timeout=60)
        await eventually(lambda: _zero_outbound(env))
        assert len(sink.messages) == 1
        assert sink.data_commands == 2  # the interrupted one and the one that got through
        count = await asyncio.to_thread(_metric, second_ops, "postern_relay_interrupted_total")
        assert count == 1.0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def _zero_outbound(env: RelayEnv) -> bool:
    return await env.outbound() == 0
