"""Store drain benchmark: how fast the store's delivery consumer empties a backlog.

A private nats-server (JetStream, ``sync_interval: always``) is pre-loaded with
``--messages`` messages of ``--size`` bytes for one local user; then the real store
service (``python -m services.store``, fsync on: every message is durable before its
ack) is started and the inbound stream is watched until it is empty. The rate is the
messages delivered between the first and the last observed delivery divided by that
time; peak RSS is the store process's high-water mark (``VmHWM``; a login would add
argon2id's 64 MiB working memory, but the drain makes none, and the dummy hash for unknown
users is made only on first use), ``rss_end_mb`` its resident size when the stream is empty.

    python -m bench.store_drain --messages 10000 --size 10240 --json out.json

prints (and writes with ``--json``)
``{"messages": N, "seconds": s, "rate": N/s, "peak_rss_mb": m, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import stop_all
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import connect
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.bus.setup import BusLimits, declare_all
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from services.ctl import daemons

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "drain.test"
USER = f"drain@{DOMAIN}"
WORDS = (
    b"the quick brown fox jumps over lazy dog mail store delivery benchmark message "
    b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
).split()


def make_message(i: int, size: int) -> bytes:
    """A plain-text RFC 5322 message of exactly ``size`` bytes (CRLF lines)."""
    head = (
        f"Received: from client.example (client.example [192.0.2.{i % 250 + 1}])\r\n"
        f"\tby filter.{DOMAIN} with ESMTPS id {i:08x}; Mon, 2 Dec 2024 10:00:00 +0000\r\n"
        f"From: Sender {i} <sender{i}@example.com>\r\n"
        f"To: Drain <{USER}>\r\n"
        f"Subject: drain benchmark message {i}\r\n"
        f"Date: Mon, 2 Dec 2024 10:00:{i % 60:02d} +0000\r\n"
        f"Message-ID: <{i}.{new_message_id()}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    lines: list[bytes] = []
    total = len(head)
    n = i
    while total < size:
        words = [WORDS[(n + k) % len(WORDS)] for k in range(11)]
        n += 7
        line = b" ".join(words) + b"\r\n"
        lines.append(line)
        total += len(line)
    body = b"".join(lines)
    data = head + body
    return data[: size - 2] + b"\r\n" if len(data) > size else data


async def preload(url: str, messages: int, size: int) -> str:
    bus = await connect(url, "store-drain", wait=30)
    try:
        await declare_all(
            bus.js, BusLimits(inbound_max_bytes=max(4 * 1024**3, messages * size * 2))
        )
        directory = await Directory.open(bus.js, watch=False)
        await directory.add_domain(DOMAIN)
        user = await directory.add_user(USER, "drain-benchmark-password")
        bodies = await bus.js.object_store(names.OBJ_BODIES)
        window = 256
        for start in range(0, messages, window):
            batch = []
            for i in range(start, min(messages, start + window)):
                msg = MailMessage(
                    id=new_message_id(), mail_from=f"sender{i}@example.com",
                    recipients=[USER], size=0,
                )  # fmt: skip
                batch.append(
                    publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, make_message(i, size))
                )
            await asyncio.gather(*batch)
        info = await bus.js.stream_info(names.STREAM_INBOUND)
        if info.state.messages != messages:
            raise RuntimeError(f"stream holds {info.state.messages} messages, not {messages}")
        return user.account_id
    finally:
        await bus.close()


def proc_mb(pid: int, field: str = "VmHWM") -> float:
    """A /proc/<pid>/status memory field in MiB (VmHWM: peak RSS; VmRSS: current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def watch_drain(
    url: str, messages: int, store: subprocess.Popen[bytes], timeout: float
) -> dict[str, Any]:
    bus = await connect(url, "store-drain-watch", wait=30)
    try:
        t0 = m0 = None
        peak = 0.0
        deadline = time.monotonic() + timeout
        while True:
            info = await bus.js.stream_info(names.STREAM_INBOUND)
            now = time.monotonic()
            left = info.state.messages
            peak = max(peak, proc_mb(store.pid))
            if t0 is None and left < messages:
                t0, m0 = now, left
            if left == 0:
                assert t0 is not None and m0 is not None
                peak = max(peak, proc_mb(store.pid))
                seconds = now - t0
                delivered = m0 if seconds > 0 else messages
                if seconds <= 0:
                    seconds = 1e-3
                return {
                    "seconds": seconds,
                    "delivered_timed": delivered,
                    "peak_rss_mb": peak,
                    "rss_end_mb": proc_mb(store.pid, "VmRSS"),
                }
            if store.poll() is not None:
                raise RuntimeError(f"the store exited with {store.returncode}")
            if now > deadline:
                raise RuntimeError(f"{left} messages still in the stream after {timeout:.0f}s")
            await asyncio.sleep(0.02)
    finally:
        await bus.close()


async def count_delivered(data: Path, account_id: str) -> int:
    store = await MailStore.open(store_root(data))
    try:
        acct = await store.account(account_id)
        inbox = await acct.mailbox("INBOX")
        return (await acct.status(inbox.id)).messages
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.store_drain", description=__doc__.split("\n")[0]
    )
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--size", type=int, default=10 * 1024, help="bytes per message")
    p.add_argument("--batch", type=int, default=256, help="delivery batch (POSTERN_DELIVERY_BATCH)")
    p.add_argument("--json", type=Path, default=None, help="write the result here too")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if args.messages <= 0 or args.size < 512:
        p.error("--messages must be positive and --size at least 512")

    work = Path(tempfile.mkdtemp(prefix="store-drain-"))
    nats: subprocess.Popen[bytes] | None = None
    store: subprocess.Popen[bytes] | None = None
    try:
        nats, url = daemons.start_nats(work)
        t = time.monotonic()
        account_id = asyncio.run(preload(url, args.messages, args.size))
        preload_s = time.monotonic() - t
        load_before = os.getloadavg()
        env = {
            **os.environ,
            "POSTERN_NATS_URL": url,
            "POSTERN_DATA": str(work / "data"),
            "POSTERN_OPS_PORT": str(daemons.free_port()),
            "POSTERN_IMAP_PORT": "0",
            "POSTERN_IMAPS_PORT": "0",
            "POSTERN_POP3_PORT": "0",
            "POSTERN_POP3S_PORT": "0",
            "POSTERN_FSYNC": "true",
            "POSTERN_DELIVERY_BATCH": str(args.batch),
            "POSTERN_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
        }
        with open(work / "store.log", "wb") as log:
            store = subprocess.Popen(
                [sys.executable, "-m", "services.store"], env=env, cwd=ROOT, stdout=log, stderr=log
            )
        watched = asyncio.run(watch_drain(url, args.messages, store, args.timeout))
        store.send_signal(signal.SIGTERM)
        store.wait(60)
        delivered = asyncio.run(count_delivered(work / "data", account_id))
        if delivered != args.messages:
            raise RuntimeError(f"{delivered} messages in the mailbox, expected {args.messages}")
        result = {
            "messages": args.messages,
            "size": args.size,
            "batch": args.batch,
            "seconds": round(watched["seconds"], 3),
            "rate": round(watched["delivered_timed"] / watched["seconds"], 1),
            "peak_rss_mb": round(watched["peak_rss_mb"], 1),
            "rss_end_mb": round(watched["rss_end_mb"], 1),
            "preload_seconds": round(preload_s, 2),
            "load_average_before": [round(x, 2) for x in load_before],
            "verified_in_mailbox": delivered,
        }
        text = json.dumps(result)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0
    finally:
        stop_all((store, nats))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
