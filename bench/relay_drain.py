"""Relay drain benchmark: how fast one relay process empties an outbound backlog into a
remote MX, and what each message costs it in CPU — the relay's share of W8 on its own,
without the submission path in front of it.

A private nats-server is pre-loaded with ``--messages`` messages of ``--size`` bytes for
``someone@sink.example`` on ``MAIL_OUTBOUND``; Postfix's ``smtp-sink`` (it offers
PIPELINING) is the remote MX by a static route; then the real relay (``python -m
services.filter.relay``, DKIM off, ``--destination-concurrency`` connections to the sink)
is started and the stream is watched until it is empty. The rate is the messages relayed
between the first and the last observed ack divided by that time; ``cpu_ms_per_message``
is the relay process's user + system CPU over the drain divided by the messages; the
sink's dump files are counted to check every message arrived.

    python -m bench.relay_drain --messages 2000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peers.sink import SmtpSink
from bench.procs import stop_all
from bench.store_drain import make_message
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import connect
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.bus.setup import BusLimits, declare_all
from services.ctl import daemons

ROOT = Path(__file__).resolve().parent.parent
REMOTE = "sink.example"
SENDER = "drain@postern.test"


async def preload(url: str, messages: int, size: int) -> None:
    bus = await connect(url, "relay-drain", wait=30)
    try:
        await declare_all(bus.js, BusLimits(outbound_max_bytes=max(1024**3, messages * size * 2)))
        bodies = await bus.js.object_store(names.OBJ_BODIES)
        window = 256
        for start in range(0, messages, window):
            batch = []
            for i in range(start, min(messages, start + window)):
                msg = MailMessage(
                    id=new_message_id(), mail_from=SENDER, recipients=[f"someone@{REMOTE}"],
                    size=0,
                )  # fmt: skip
                body = make_message(i, size)
                batch.append(publish_mail(bus.js, bodies, names.SUBJECT_OUTBOUND, msg, body))
            await asyncio.gather(*batch)
        info = await bus.js.stream_info(names.STREAM_OUTBOUND)
        if info.state.messages != messages:
            raise RuntimeError(f"stream holds {info.state.messages} messages, not {messages}")
    finally:
        await bus.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def watch_drain(
    url: str, messages: int, relay: subprocess.Popen[bytes], sink: SmtpSink, timeout: float
) -> dict[str, Any]:
    bus = await connect(url, "relay-drain-watch", wait=30)
    try:
        t0 = m0 = None
        cpu0 = 0.0
        deadline = time.monotonic() + timeout
        while True:
            info = await bus.js.stream_info(names.STREAM_OUTBOUND)
            now = time.monotonic()
            left = info.state.messages
            if t0 is None and left < messages:
                t0, m0, cpu0 = now, left, cpu_seconds(relay.pid)
            if left == 0:
                assert t0 is not None and m0 is not None
                seconds = max(now - t0, 1e-3)
                return {
                    "seconds": seconds,
                    "relayed_timed": m0,
                    "cpu_seconds": cpu_seconds(relay.pid) - cpu0,
                }
            if relay.poll() is not None:
                raise RuntimeError(f"the relay exited with {relay.returncode}")
            if not sink.pids():
                raise RuntimeError(f"smtp-sink exited (see {sink.root / 'sink.log'})")
            if now > deadline:
                raise RuntimeError(f"{left} messages still in the stream after {timeout:.0f}s")
            await asyncio.sleep(0.02)
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.relay_drain", description=__doc__.split("\n")[0]
    )
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=10 * 1024, help="bytes per message")
    p.add_argument("--destination-concurrency", type=int, default=20)
    p.add_argument("--json", type=Path, default=None, help="write the result here too")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--keep", action="store_true", help="keep the working directory")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent of the working directory (default: the system's temporary directory)",
    )
    args = p.parse_args(argv)
    if args.messages <= 0 or args.size < 512:
        p.error("--messages must be positive and --size at least 512")

    work = Path(tempfile.mkdtemp(prefix="relay-drain-", dir=args.workdir))
    os.chmod(work, 0o755)  # smtp-sink drops to 'nobody' when run as root
    nats: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None
    sink = SmtpSink(work / "sink")
    try:
        nats, url = daemons.start_nats(work)
        asyncio.run(preload(url, args.messages, args.size))
        sink.start()
        load_before = os.getloadavg()
        env = {
            **os.environ,
            "POSTERN_NATS_URL": url,
            "POSTERN_DATA": str(work / "data"),
            "POSTERN_HOSTNAME": "relay.postern.test",
            "POSTERN_RELAY_OPS_PORT": str(daemons.free_port()),
            "POSTERN_RELAY_ROUTES": json.dumps({REMOTE: sink.address}),
            "POSTERN_RELAY_DKIM": "false",
            "POSTERN_RELAY_DESTINATION_CONCURRENCY": str(args.destination_concurrency),
            "POSTERN_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
        }
        with open(work / "relay.log", "wb") as log:
            relay = subprocess.Popen(
                [sys.executable, "-m", "services.filter.relay"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        watched = asyncio.run(watch_drain(url, args.messages, relay, sink, args.timeout))
        load_after = os.getloadavg()
        deadline = time.monotonic() + 30
        while sink.count() < args.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        arrived = sink.count()
        if arrived != args.messages:
            raise RuntimeError(f"{arrived} messages at the sink, expected {args.messages}")
        timed = watched["relayed_timed"]
        result = {
            "messages": args.messages,
            "size": args.size,
            "destination_concurrency": args.destination_concurrency,
            "seconds": round(watched["seconds"], 3),
            "rate": round(timed / watched["seconds"], 1),
            "cpu_ms_per_message": round(1000 * watched["cpu_seconds"] / timed, 3),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "arrived_at_sink": arrived,
        }
        text = json.dumps(result)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0
    finally:
        stop_all((relay, nats))
        sink.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
