"""Filter nodes as real processes (``python -m services.filter``, uvloop): two of them on
one NATS serve at once, with no store running at all (the filter needs none)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import pytest

from mailcore.bus.connect import Bus
from services.ctl.daemons import free_port, wait_for_port
from tests.services.filter.conftest import (
    ALICE,
    BOB,
    PASSWORD,
    Accounts,
    RawClient,
    stream_messages,
)
from tests.services.filter.haproxy import HaproxyLike, v2
from tests.support.daemons import NatsServer

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class FilterProcess:
    name: str
    proc: subprocess.Popen[bytes]
    smtp: int
    submission: int
    ops: int
    proxy_submissions: int
    data: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def spawn(
    name: str, nats_url: str, workdir: Path, extra: dict[str, str] | None = None
) -> FilterProcess:
    smtp, submission, submissions, ops = free_port(), free_port(), free_port(), free_port()
    proxy_submissions = free_port()
    data = workdir / name
    data.mkdir(parents=True)
    env = os.environ | {
        "POSTERN_NATS_URL": nats_url,
        "POSTERN_DATA": str(data),
        "POSTERN_HOSTNAME": f"{name}.example.test",
        "POSTERN_SMTP_PORT": str(smtp),
        "POSTERN_SUBMISSION_PORT": str(submission),
        "POSTERN_SUBMISSIONS_PORT": str(submissions),
        "POSTERN_PROXY_SUBMISSIONS_PORT": str(proxy_submissions),
        "POSTERN_OPS_PORT": str(ops),
        "POSTERN_SPAMD_ENABLED": "false",
        "POSTERN_CLAMD_ENABLED": "false",
        "POSTERN_LOG_FORMAT": "json",
    }
    env |= extra or {}
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.filter"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    return FilterProcess(name, proc, smtp, submission, ops, proxy_submissions, data, log)


@pytest.fixture
def two_filters(
    nats_server: NatsServer, accounts: Accounts, tmp_path: Path
) -> Iterator[list[FilterProcess]]:
    nodes = [spawn(name, nats_server.url, tmp_path) for name in ("filter-a", "filter-b")]
    try:
        for node in nodes:
            alive = lambda node=node: node.proc.poll() is None  # noqa: E731
            if not wait_for_port("127.0.0.1", node.smtp, 60, alive):
                raise AssertionError(f"{node.name} did not start:\n{node.log_tail()}")
        yield nodes
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.proc.wait(30)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()


async def deliver(port: int, n: int) -> str:
    client = await RawClient.connect(port)
    try:
        await client.expect("EHLO client.test", 250)
        await client.expect("MAIL FROM:<carol@remote.test>", 250)
        await client.expect(f"RCPT TO:<{ALICE}>", 250)
        return await client.send_message(f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode())
    finally:
        await client.close()


def healthz(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
        return dict(json.loads(reply.read()))


async def test_two_filter_processes_serve_at_once_without_a_store(
    two_filters: list[FilterProcess], bus: Bus
) -> None:
    a, b = two_filters
    replies = await asyncio.gather(*(deliver(node.smtp, i) for i in range(15) for node in (a, b)))
    assert all(r.startswith("250 2.0.0 Ok: queued as ") for r in replies), replies
    ids = {r.rsplit(" ", 1)[1] for r in replies}
    assert len(ids) == 30

    # No store process exists here: every message waits, durable, in the inbound stream.
    messages = await stream_messages(bus)
    assert {m.id for m in messages} == ids
    by = {m.body.split(b"\r\n\tby ", 1)[1].split(b" ", 1)[0] for m in messages}
    assert by == {b"filter-a.example.test", b"filter-b.example.test"}

    for node in (a, b):
        health = await asyncio.to_thread(healthz, node.ops)
        assert health["status"] == "ok", health


async def test_starttls_and_auth_under_uvloop(two_filters: list[FilterProcess], bus: Bus) -> None:
    from mailcore.tls import client_context_trusting

    a = two_filters[0]
    client = await RawClient.connect(a.submission)
    await client.expect("EHLO client.test", 250)
    await client.starttls(client_context_trusting(a.data / "tls" / "cert.pem"))
    await client.expect("EHLO client.test", 250)
    assert (await client.login(ALICE, PASSWORD)).startswith("235 ")
    await client.expect(f"MAIL FROM:<{ALICE}>", 250)
    await client.expect(f"RCPT TO:<{BOB}>", 250)
    assert (await client.send_message(b"Subject: tls\r\n\r\nx\r\n")).startswith("250 ")
    await client.expect("QUIT", 221)
    await client.close()
    [msg] = await stream_messages(bus)
    assert msg.client.tls and msg.client.auth_user == ALICE


async def test_proxy_header_then_implicit_tls_under_uvloop(
    two_filters: list[FilterProcess], bus: Bus
) -> None:
    """HAProxy's send-proxy-v2 in front of port 465: the header in the clear, the
    ClientHello in the same write, then TLS, on the uvloop transports production runs."""
    from mailcore.tls import client_context_trusting

    a = two_filters[0]
    tls = client_context_trusting(a.data / "tls" / "cert.pem")
    async with HaproxyLike(a.proxy_submissions, v2("198.51.100.4")) as proxy:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=proxy.port, use_tls=True, tls_context=tls)
        await smtp.connect()
        await smtp.login(BOB, PASSWORD)
        errors, _ = await smtp.sendmail(BOB, [ALICE], b"Subject: 465 via proxy\r\n\r\nx\r\n")
        assert errors == {}
        await smtp.quit()
    [msg] = await stream_messages(bus)
    assert msg.client.ip == "198.51.100.4" and msg.client.listener == "proxy-submissions"
    assert msg.client.tls and msg.client.auth_user == BOB


def test_sigterm_stops_cleanly(two_filters: list[FilterProcess]) -> None:
    for node in two_filters:
        node.proc.send_signal(signal.SIGTERM)
    for node in two_filters:
        assert node.proc.wait(30) == 0, node.log_tail()
