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
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nats.js import api as js_api
from nats.js.client import JetStreamContext

from bench.procs import stop_all
from bench.relay_drain import cpu_seconds
from bench.stats import percentile
from mailcore.bus import names
from mailcore.bus.connect import connect
from mailcore.bus.schemas import new_message_id
from mailcore.bus.setup import BusLimits, declare_all, relay_consumer, stream_configs
from services.ctl import daemons


async def measure(
    url: str,
    nats_pid: int,
    *,
    messages: int,
    sessions: int,
    size: int,
    consume: bool,
    purge: float | None = None,
) -> dict[str, Any]:
    bus = await connect(url, "bus-ceiling", wait=30)
    try:
        limits = BusLimits(outbound_max_bytes=max(1024**3, messages * size * 2))
        await declare_all(bus.js, limits)
        if purge is not None:
            await limits_stream(bus.js, limits)
            consume = True
        frame = b"{}\n" + b"x" * size
        latencies: list[float] = []
        acked = 0
        purges = 0
        purged_to = 0

        async def purger(stopping: asyncio.Event) -> None:
            nonlocal purges, purged_to
            assert purge is not None
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), purge)
                info = await bus.js.consumer_info(names.STREAM_OUTBOUND, names.CONSUMER_RELAY)
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                if floor and floor > purged_to:
                    await bus.js.purge_stream(names.STREAM_OUTBOUND, seq=floor + 1)
                    purged_to = floor
                    purges += 1
                if stopping.is_set():
                    # the last acks are fire-and-forget: wait until the floor has them all
                    if purged_to >= messages:
                        return
                    await asyncio.sleep(0.02)

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
        purge_stop = asyncio.Event()
        purging = asyncio.create_task(purger(purge_stop)) if purge is not None else None
        shares = [messages // sessions + (i < messages % sessions) for i in range(sessions)]
        cpu0 = cpu_seconds(nats_pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(publisher(n) for n in shares if n))
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(nats_pid) - cpu0
        meanwhile = acked
        if reader is not None:  # the rest, so every message is known to be acked off
            await asyncio.wait_for(reader, 60 + messages / 10)
        left = None
        if purging is not None:  # a last purge up to the final ack floor
            purge_stop.set()
            await asyncio.wait_for(purging, 60)
            left = (await bus.js.stream_info(names.STREAM_OUTBOUND)).state.messages
        stream = await bus.js.stream_info(names.STREAM_OUTBOUND)
        retention = stream.config.retention
        return {
            "messages": messages,
            "sessions": sessions,
            "size": size,
            "consume": consume,
            "retention": js_api.RetentionPolicy(retention).value if retention else None,
            "purge_interval": purge,
            "purges": purges,
            "left_after_purge": left,
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


async def limits_stream(js: JetStreamContext, limits: BusLimits) -> None:
    """Replace the work-queue ``MAIL_OUTBOUND`` with the batch-purge design's: limits
    retention, otherwise the same stream, and the relay's durable on it again."""
    (outbound,) = (c for c in stream_configs(limits) if c.name == names.STREAM_OUTBOUND)
    await js.delete_stream(names.STREAM_OUTBOUND)
    await js.add_stream(dataclasses.replace(outbound, retention=js_api.RetentionPolicy.LIMITS))
    await js.add_consumer(names.STREAM_OUTBOUND, relay_consumer(limits))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.bus_ceiling", description=__doc__.split("\n")[0]
    )
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--sessions", type=int, default=10, help="concurrent publishers (W8: 10)")
    p.add_argument("--size", type=int, default=10 * 1024, help="bytes per message")
    p.add_argument("--consume", action="store_true", help="a consumer acks meanwhile")
    p.add_argument(
        "--purge",
        type=float,
        default=None,
        metavar="SECONDS",
        help="limits retention, acks purged up to the ack floor every SECONDS (implies --consume)",
    )
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
                purge=args.purge,
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
