"""The outbound relay SIGKILLed mid-transaction under submission load. The remote MX is an
aiosmtpd sink on loopback (``POSTERN_RELAY_ROUTES``); the ledger is checked against what
the sink received, not against our mailboxes.

The sink kills the relay itself at two exact moments of an SMTP transaction:

* at RCPT: the remote has nothing yet; the relay must deliver the message after restart;
* after the DATA, before the remote's 250 reaches the relay: the remote has the message
  and the relay cannot know. RFC 5321 §6.1: once the remote has said 250 it is
  responsible for the message, but a sender that did not see the 250 must send again, so
  "the message may be delivered twice". Such a copy is a *duplicate*, counted; it is
  *explained* when a relay kill lies between its two deliveries (the remote's 250 and the
  relay's settlement of it straddle the crash). A duplicate with no kill in between fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.parser
import json
import os
import signal
import threading
import time
from collections import defaultdict
from typing import Any

from aiosmtpd.controller import Controller

from mailcore.bus import names
from reliability.checker import Report
from reliability.cluster import HOST, LIMITS
from reliability.ledger import HEADER, Outcome
from reliability.load import Load
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, cluster_run, restart_when_dead
from services.ctl import daemons

REMOTE = "remote.test"
ACK_WAIT = 3.0  # the relay's consumer: what a killed relay held comes back in seconds


class Sink:
    """aiosmtpd handler: records each message's X-Reliability-Id with the relay's
    *generation* (bumped at every kill) at the start of its transaction, which names the
    relay process that sent it, and SIGKILLs the relay when armed."""

    def __init__(self, pid_of_relay: Any) -> None:
        self.pid_of_relay = pid_of_relay
        self.lock = threading.Lock()
        self.generation = 0
        self.copies: dict[str, list[int]] = defaultdict(list)  # rid -> generations
        self.armed: str | None = None  # "rcpt" or "data"
        self.fired: list[str] = []

    def arm(self, step: str) -> None:
        with self.lock:
            self.armed = step

    def _kill(self, step: str) -> None:
        # called with the lock held
        pid = self.pid_of_relay()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self.generation += 1
        self.armed = None
        self.fired.append(step)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        # The relay process that sent a copy is the one alive when its transaction began
        # (its final dot may be read after a kill, as another session's DATA fires it).
        with self.lock:
            envelope.generation = self.generation
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            if self.armed == "rcpt":
                self._kill("rcpt")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        head = email.parser.BytesHeaderParser().parsebytes(data)
        rid = str(head.get(HEADER, "")).strip()
        with self.lock:
            if rid:
                self.copies[rid].append(getattr(envelope, "generation", self.generation))
            if self.armed == "data":  # the data is here; the relay never sees our 250
                self._kill("data")
        return "250 OK queued"


def relay_report(name: str, load: Load, sink: Sink) -> Report:
    """The ledger (what submission acked) against what the remote MX received."""
    report = Report(name)
    attempts: dict[str, list[Outcome]] = defaultdict(list)
    for e in load.ledger:
        attempts[e.rid].append(e.outcome)
        code = str(e.code) if e.code is not None else "none"
        report.answers[code] = report.answers.get(code, 0) + 1
        if e.bad_answer:
            report.bad_answers += 1
            report.note(f"{e.rid}: valid message answered {e.code} at {e.step}")
    acked = {rid for rid, outs in attempts.items() if Outcome.ACKED in outs}
    report.acked = len(acked)
    with sink.lock:
        copies = {rid: list(gens) for rid, gens in sink.copies.items()}
    for rid in sorted(acked - copies.keys()):
        report.lost += 1
        report.note(f"lost: {rid} acked by submission, never reached the remote MX")
    for rid, gens in copies.items():
        outs = attempts.get(rid)
        if not outs or all(o is Outcome.REFUSED for o in outs):
            report.phantom += 1
            report.note(f"phantom: {rid} reached the remote MX, every submission refused")
        if len(gens) > 1:
            report.duplicated += len(gens) - 1
            if len(set(gens)) > 1:  # a relay kill between the remote's 250 and our ack
                report.explained_duplicates += len(gens) - 1
                report.note(
                    f"duplicate (RFC 5321 §6.1, explained): {rid} delivered {len(gens)}×, "
                    "a relay kill between the remote's 250 and the relay's settlement"
                )
            else:
                report.note(f"duplicate with no relay kill in between: {rid}")
    return report


async def _outbound_backlog(run: Any) -> int:
    bus = await run.cluster.bus()
    try:
        info = await bus.js.consumer_info(names.STREAM_OUTBOUND, names.CONSUMER_RELAY)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    finally:
        await bus.close()


async def _settled(run: Any, load: Load, sink: Sink, timeout: float) -> bool:
    """Every acked message at the remote and the relay's queue empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acked = {e.rid for e in load.ledger if e.outcome is Outcome.ACKED}
        with sink.lock:
            arrived = acked <= sink.copies.keys()
        try:
            if arrived and await _outbound_backlog(run) == 0:
                return True
        except Exception:  # NATS busy: ask again
            pass
        await asyncio.sleep(0.5)
    return False


@scenario(
    "relay-kill-mid-transaction",
    "relay",
    "relay SIGKILLed at RCPT and after DATA before the remote's 250 (submission load)",
)
async def relay_kill(ctx: Context) -> Report:
    name = "relay-kill-mid-transaction"
    sink_port = daemons.free_port()
    env = {
        "POSTERN_RELAY_ROUTES": json.dumps({REMOTE: f"{HOST}:{sink_port}"}),
        "POSTERN_RELAY_RETRY_SCHEDULE": "[1, 2, 4]",
        "POSTERN_RELAY_ACK_WAIT": str(ACK_WAIT),
        "POSTERN_RELAY_DKIM": "false",
        "POSTERN_RELAY_CONNECT_TIMEOUT": "5",
        "POSTERN_RELAY_COMMAND_TIMEOUT": "30",
    }
    limits = dataclasses.replace(LIMITS, relay_ack_wait=ACK_WAIT)
    async with cluster_run(ctx, name, extra_env=env, limits=limits) as run:
        c = run.cluster

        def relay_pid() -> int | None:
            p = c.procs.get("relay")
            return p.pid if p is not None and p.poll() is None else None

        sink = Sink(relay_pid)
        controller = Controller(sink, hostname=HOST, port=sink_port)
        controller.start()
        try:
            await asyncio.to_thread(c.start_service, "relay")
            user, password = next(iter(c.users.items()))
            load = Load(
                HOST,
                c.submission_port,
                run.ledger,
                [f"r{i}@{REMOTE}" for i in range(4)],
                sender=user,
                senders=ctx.senders,
                auth=(user, password),
            )
            run.load = load
            load.start()
            died = []
            for step in ("rcpt", "data"):
                await asyncio.sleep(ctx.duration / 3)
                sink.arm(step)
                died.append(await restart_when_dead(run, "relay", timeout=ctx.duration * 2))
            await asyncio.sleep(ctx.duration / 3)
            await run.stop_load()
            settled = await _settled(run, load, sink, timeout=120)
            report = relay_report(name, load, sink)
            for step, ok in zip(("rcpt", "data"), died, strict=True):
                if not ok:
                    report.fail(f"the relay was not killed at {step} (no transaction came)")
            if not settled:
                report.fail("acked mail not all at the remote MX, or the relay queue not empty")
            with sink.lock:
                delivered = sum(len(g) for g in sink.copies.values())
            report.note(f"remote MX received {delivered} messages; relay killed at {sink.fired}")
            return report
        finally:
            controller.stop()
