"""Bus ceiling for W8: how many outbound messages a private nats-server takes per second
when nothing else is in the way — the part of W8 that no Python service can speed up.

``--sessions`` publishers each publish their share of ``--messages`` frames of ``--size``
bytes to ``MAIL_OUTBOUND`` one after another and wait for every PubAck (as the filter's
hand-off does before its 250; ``Nats-Msg-Id`` set, so the stream's duplicate check runs
too). With ``--consume`` one consumer on the relay's durable fetches and acks each message
meanwhile (as the relay settles a delivered message): on a work-queue stream every ack
removes the message, which nats-server persists with its own write and, under
``sync_interval: always``, its own fsync. No SMTP, no filter, no relay.

Reported: the publish rate (first publish to last PubAck), PubAck latency p50/p99, how
many messages the consumer had acked by then (it acks the rest afterwards), and
nats-server's CPU per published message while publishing.

    python -m bench.bus_ceiling --messages 2000 --consume --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import stop_all
from bench.relay_drain import cpu_seconds
from bench.stats import percentile
from mailcore.bus import names
from mailcore.bus.connect import connect
from mailcore.bus.schemas import new_message_id
from mailcore.bus.setup import BusLimits, declare_all
from services.ctl import daemons


async def measure(
    url: str, nats_pid: int, *, messages: int, sessions: int, size: int, consume: bool
) -> dict[str, Any]:
    bus = await connect(url, "bus-ceiling", wait=30)
    try:
        await declare_all(bus.js, BusLimits(outbound_max_bytes=max(1024**3, messages * size * 2)))
        frame = b"{}\n" + b"x" * size
        latencies: list[float] = []
        acked = 0

        async def consumer() -> None:
            nonlocal acked
            sub = await bus.js.pull_subscribe_bind(
                durable=names.CONSUMER_RELAY, stream=names.STREAM_OUTBOUND
            )
            while acked < messages:
                try:
                    msgs = await sub.fetch(64, timeout=0.5)
                except Exception:  # nothing there yet (fetch timeout)
                    continue
                for msg in msgs:
                    await msg.ack()
                    acked += 1

        async def publisher(count: int) -> None:
            for _ in range(count):
                started = time.perf_counter()
                await bus.js.publish(
                    names.SUBJECT_OUTBOUND, frame, headers={names.HDR_MSG_ID: new_message_id()}
                )
                latencies.append(time.perf_counter() - started)

        reader = asyncio.create_task(consumer()) if consume else None
        shares = [messages // sessions + (i < messages % sessions) for i in range(sessions)]
        cpu0 = cpu_seconds(nats_pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(publisher(n) for n in shares if n))
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(nats_pid) - cpu0
        meanwhile = acked
        if reader is not None:  # the rest, so every message is known to be acked off
            await asyncio.wait_for(reader, 60 + messages / 10)
        return {
            "messages": messages,
            "sessions": sessions,
            "size": size,
            "consume": consume,
            "seconds": round(seconds, 3),
            "publish_rate": round(messages / seconds, 1),
            "puback_p50_ms": round(1000 * (percentile(latencies, 50) or 0), 2),
            "puback_p99_ms": round(1000 * (percentile(latencies, 99) or 0), 2),
            "acked_meanwhile": meanwhile,
            "acked": acked,
            "nats_cpu_ms_per_message": round(1000 * cpu / messages, 3),
        }
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.bus_ceiling", description=__doc__.split("\n")[0]
    )
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--sessions", type=int, default=10, help="concurrent publishers (W8: 10)")
    p.add_argument("--size", type=int, default=10 * 1024, help="bytes per message")
    p.add_argument("--consume", action="store_true", help="a consumer acks meanwhile")
    p.add_argument("--json", type=Path, default=None, help="write the result here too")
    p.add_argument("--workdir", type=Path, default=None, help="parent of the working directory")
    args = p.parse_args(argv)
    if args.messages <= 0 or args.sessions <= 0 or args.size <= 0:
        p.error("--messages, --sessions and --size must be positive")
    work = Path(tempfile.mkdtemp(prefix="bus-ceiling-", dir=args.workdir))
    nats = None
    try:
        nats, url = daemons.start_nats(work)
        load_before = os.getloadavg()
        result = asyncio.run(
            measure(
                url,
                nats.pid,
                messages=args.messages,
                sessions=args.sessions,
                size=args.size,
                consume=args.consume,
            )
        )
        result["load_average_before"] = [round(x, 2) for x in load_before]
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        text = json.dumps(result)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0
    finally:
        stop_all((nats,))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
