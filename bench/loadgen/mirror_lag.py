"""W6's load generator: delivery into the master store and arrival on its mirror.

Messages are published to the master's MAIL_INBOUND as the filter would (schema v1,
claim-check, each publish awaiting its PubAck), and two IMAP sessions, one on each store,
sit in IDLE (RFC 2177) on the same account's INBOX: the k-th ``* n EXISTS`` growth on the
master is the k-th delivery, the k-th on the mirror the k-th replicated message, so the
replication lag of message k is ``mirror[k] - master[k]`` (the store delivers in stream
order; a burst shown by one EXISTS gives its messages the same time).

* ``--mode capacity``: ``--messages`` published at once (64 in flight); the delivery rate
  is the count over the time from the first publish until the master showed the last.
* ``--mode lag``: ``--rate`` messages per second for ``--duration`` seconds, paced by
  the clock (a publish that is late does not delay the next ones' schedule).

Prints one JSON object: counts, the rate achieved, lags (seconds) and their percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from nats.errors import TimeoutError as NatsTimeout

from bench.corpus import message
from bench.loadgen.wire import Imap, exists_count
from bench.postern import publish_messages
from bench.stats import percentile
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus, connect
from mailcore.bus.schemas import ClientInfo, MailMessage, ScanResult, new_message_id

HOST = "127.0.0.1"
WAIT = 300.0  # seconds for the last message to show up on both stores (a hang guard)
PUBLISH_ATTEMPTS = 3


@dataclass
class Arrivals:
    """Monotonic times at which an IDLE session saw each new message."""

    base: int
    times: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_line(self, line: bytes) -> None:
        n = exists_count(line)
        if n is None:
            return
        now = time.monotonic()
        while self.base + len(self.times) < n:
            self.times.append(now)
        self.changed.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.times)} of {count} messages arrived")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


class Watch:
    """One IDLE session on INBOX of ``user`` at ``port``."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.port, self.user, self.password = port, user, password
        self.conn: Imap | None = None
        self.arrivals = Arrivals(0)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.conn = await Imap.connect(HOST, self.port)
        await self.conn.login(self.user, self.password)
        self.arrivals = Arrivals(await self.conn.select("INBOX"))
        self.conn.on_untagged = self.arrivals.on_line
        await self.conn.idle_start()
        self._task = asyncio.create_task(self.conn.idle_read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.conn is not None:
            self.conn.close()


def mail_for(user: str, i: int, size: int) -> tuple[MailMessage, bytes]:
    body = message(i, size, to=user)
    msg = MailMessage(
        id=new_message_id(),
        mail_from="sender@example.org",
        recipients=[user],
        size=len(body),
        client=ClientInfo(ip=HOST, helo="bench.client"),
        scan=ScanResult(),
    )
    return msg, body


async def paced(bus: Bus, user: str, rate: float, duration: float, size: int) -> float:
    """Publish at ``rate`` per second for ``duration`` seconds; the rate achieved."""
    objects = await bus.js.object_store(names.OBJ_BODIES)
    count = max(1, round(rate * duration))
    pending: set[asyncio.Task[Any]] = set()
    t0 = time.monotonic()
    for i in range(count):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        msg, body = mail_for(user, i, size)
        task = asyncio.create_task(_publish(bus, objects, msg, body))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*list(pending))
    return count / max(1e-9, time.monotonic() - t0)


async def _publish(bus: Bus, objects: Any, msg: MailMessage, body: bytes) -> None:
    """Publish as the filter hands off; a PubAck that does not come in time is asked for
    again, as a sender retries a 451 (the same Nats-Msg-Id: stored once)."""
    for attempt in range(PUBLISH_ATTEMPTS):
        try:
            await publish_mail(bus.js, objects, names.SUBJECT_INBOUND, msg, body)
            return
        except NatsTimeout:
            if attempt == PUBLISH_ATTEMPTS - 1:
                raise


def summary(name: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        f"{name}_p50": percentile(values, 50) or 0.0,
        f"{name}_p99": percentile(values, 99) or 0.0,
        f"{name}_max": max(values),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    master = Watch(args.imap_master, args.user, args.password)
    mirror = Watch(args.imap_mirror, args.user, args.password)
    await master.start()
    await mirror.start()
    bus = await connect(args.nats, "postern-bench-w6", wait=20)
    try:
        t0 = time.monotonic()
        if args.mode == "capacity":
            count = args.messages
            bodies = (message(i, args.size, to=args.user) for i in range(count))
            await publish_messages(bus, args.user, bodies)
            offered = 0.0
        else:
            offered = await paced(bus, args.user, args.rate, args.duration, args.size)
            count = max(1, round(args.rate * args.duration))
        await master.arrivals.wait_for(count, WAIT)
        await mirror.arrivals.wait_for(count, WAIT)
    finally:
        await bus.close()
        await master.stop()
        await mirror.stop()
    m, r = master.arrivals.times[:count], mirror.arrivals.times[:count]
    lags = [max(0.0, b - a) for a, b in zip(m, r, strict=True)]
    out: dict[str, Any] = {
        "messages": count,
        "offered_rate": offered,
        "delivery_rate": count / max(1e-9, m[-1] - t0),
        "mirror_rate": count / max(1e-9, r[-1] - t0),
        **summary("lag", lags),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("capacity", "lag"), required=True)
    ap.add_argument("--nats", required=True, help="the master's NATS URL")
    ap.add_argument("--imap-master", type=int, required=True)
    ap.add_argument("--imap-mirror", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--messages", type=int, default=2000, help="capacity: how many")
    ap.add_argument("--rate", type=float, default=50.0, help="lag: messages per second")
    ap.add_argument("--duration", type=float, default=20.0, help="lag: seconds")
    ap.add_argument("--size", type=int, default=10 * 1024)
    print(json.dumps(asyncio.run(run(ap.parse_args()))))


if __name__ == "__main__":
    main()
