"""W8's measurement: mail submitted for a remote domain until it reaches the sink.

``sessions`` connections each submit their share of ``messages`` one transaction after
another (AUTH PLAIN first when a login is given: Postern's submission port wants it;
Postfix relays for 127.0.0.0/8 without; one untimed login warms the filter's cache of
successful password checks). Every message carries ``X-Bench-Id``; the sink
dumps each one to a file whose modification time is its arrival. Reported: throughput
from the first submission to the last arrival, and the latency of each message from the
start of its submission (MAIL FROM) to its arrival: p50, p99.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field

from bench.loadgen.wire import Smtp
from bench.peers.sink import SmtpSink
from bench.stats import percentile

HOST = "127.0.0.1"


@dataclass
class SubmitResult:
    started: float
    submitted_s: float
    arrived_s: float | None  # None: not every message reached the sink in time
    latencies: list[float] = field(default_factory=list)
    arrived: int = 0

    def values(self, messages: int) -> dict[str, float]:
        out = {"submit": messages / self.submitted_s}
        if self.arrived_s is not None:
            out["e2e"] = messages / self.arrived_s
        if self.latencies:
            out["latency_p50"] = 1000 * (percentile(self.latencies, 50) or 0)
            out["latency_p99"] = 1000 * (percentile(self.latencies, 99) or 0)
        return out


def with_id(body: bytes, bench_id: str) -> bytes:
    return b"X-Bench-Id: " + bench_id.encode() + b"\r\n" + body


async def _session(
    port: int,
    ids: list[str],
    body: bytes,
    sender: str,
    rcpt: str,
    login: tuple[str, str] | None,
    sent: dict[str, float],
) -> None:
    conn = await Smtp.connect(HOST, port)
    try:
        if login is not None:
            token = base64.b64encode(f"\0{login[0]}\0{login[1]}".encode())
            await conn.send_line(b"AUTH PLAIN " + token, expect=235)
        for bench_id in ids:
            sent[bench_id] = time.time()
            await conn.send(sender, [rcpt], with_id(body, bench_id))
    finally:
        conn.writer.write(b"QUIT\r\n")
        conn.writer.close()


async def run_submit(
    *,
    port: int,
    sink: SmtpSink,
    run: int,
    messages: int,
    sessions: int,
    body: bytes,
    sender: str,
    rcpt: str,
    login: tuple[str, str] | None,
    timeout: float,
) -> SubmitResult:
    if login is not None:
        # One login first, untimed: the filter caches a successful check (argon2id is
        # deliberately slow), as it has for a user who submits all day.
        await _session(port, [], body, sender, rcpt, login, {})
    sink.clear()
    ids = [f"r{run}m{i}" for i in range(messages)]
    shares = [ids[i::sessions] for i in range(sessions)]
    sent: dict[str, float] = {}
    started = time.time()
    await asyncio.gather(
        *(_session(port, share, body, sender, rcpt, login, sent) for share in shares if share)
    )
    submitted = time.time() - started
    deadline = time.monotonic() + timeout
    mine: dict[str, float] = {}
    while time.monotonic() < deadline:
        # A dump file is read once it is complete (it names its X-Bench-Id at the top).
        if sink.count() >= messages:
            mine = {a.bench_id: a.at for a in sink.arrivals() if a.bench_id in sent}
            if len(mine) >= messages:
                break
        await asyncio.sleep(0.1)
    latencies = [max(0.0, at - sent[i]) for i, at in mine.items()]
    complete = len(mine) >= messages
    return SubmitResult(
        started=started,
        submitted_s=submitted,
        arrived_s=(max(mine.values()) - started) if complete else None,
        latencies=latencies,
        arrived=len(mine),
    )
