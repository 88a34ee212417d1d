"""W1: SMTP accepted → visible over IMAP, scanners stubbed.

Postern: filter (POSTERN_SPAMD_ENABLED=false, POSTERN_CLAMD_ENABLED=false) → NATS
JetStream → store. Peer: Postfix → LMTP → Dovecot. Same generator (``smtp-source``),
sessions, message and count on both; see :mod:`bench.loadgen.smtp_flow`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loadgen.smtp_flow import run_flow
from bench.peers.mailuser import PeerSetupError
from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import DOMAIN, PASSWORD, Context, Driver, Sample, Workload
from bench.workloads.common import (
    start_dovecot,
    start_postern,
    start_postfix,
    write_message_files,
)


class FlowDriver(Driver):
    """One side of W1/W2: SMTP on ``smtp_port``, IMAP on ``imap_port``."""

    def __init__(
        self,
        pids: Callable[[], list[int]],
        smtp_port: int,
        imap_port: int,
        params: dict[str, Any],
        msg_file: Path,
        probe_body: bytes,
        *,
        count_probes: bool = False,
    ) -> None:
        self._pids = pids
        self.count_probes = count_probes
        self.smtp_port = smtp_port
        self.imap_port = imap_port
        self.params = params
        self.msg_file = msg_file
        self.probe_body = probe_body

    def pids(self) -> list[int]:
        return self._pids()

    def run_once(self, run: int) -> Sample:
        p = self.params
        result = asyncio.run(
            run_flow(
                smtp_port=self.smtp_port,
                imap_port=self.imap_port,
                rcpt=run_address(p["prefix"], run),
                probe=f"{p['prefix']}probe@{DOMAIN}",
                password=PASSWORD,
                messages=p["messages"],
                sessions=p["sessions"],
                msg_file=self.msg_file,
                probe_body=self.probe_body,
                timeout=p["timeout"],
            )
        )
        notes = [result.probe_note] if result.probe_note else []
        if result.visible_s is None:
            notes.append(
                f"only {result.visible} of the messages became visible within {p['timeout']}s"
            )
        if result.lost_probes:
            notes.append(f"{result.lost_probes} latency probes never showed up in IDLE")
        notes.append(f"{len(result.latencies)} latency probes")
        if self.count_probes:
            notes.append(f"{result.probes_sent} probes counted in the throughput")
        gen = result.generator
        return Sample(
            values=result.values(p["messages"], count_probes=self.count_probes),
            loadgen_cpu=gen.cpu_s if gen else None,
            notes=notes,
        )


def run_address(prefix: str, run: int) -> str:
    """Each run delivers to a fresh mailbox, so run 3 does not see run 1's mail."""
    return f"{prefix}run{run + 1}@{DOMAIN}"


def accounts(prefix: str, runs: int) -> dict[str, str]:
    users = {run_address(prefix, r): PASSWORD for r in range(runs)}
    users[f"{prefix}probe@{DOMAIN}"] = PASSWORD
    return users


class SmtpToImap(Workload):
    id = "W1"
    title = "SMTP accepted → visible over IMAP, scanners stubbed"
    peer_name = "Postfix → LMTP → Dovecot"
    metrics = [
        MetricDef("e2e", "throughput, accepted and visible over IMAP", "msg/s", True, 1.2),
        MetricDef("accept", "SMTP accept rate (smtp-source)", "msg/s", True, 1.0),
        MetricDef("latency_p50", "250 → IDLE EXISTS, median under load", "ms", False),
        MetricDef("latency_p95", "250 → IDLE EXISTS, p95 under load", "ms", False, main=False),
    ]

    def params(self, ctx: Context) -> dict[str, Any]:
        return {
            "messages": 200 if ctx.quick else 3000,
            "sessions": 10 if ctx.quick else 20,
            "size": 10 * 1024,
            "timeout": 300,
            "prefix": "w1",
        }

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        users = accounts(p["prefix"], self.runs(ctx))
        where = ctx.dir(self.id)
        msg_file, body = write_message_files(where, p["size"], f"{p['prefix']}@{DOMAIN}")
        drivers: dict[Side, Driver] = {}
        postern = start_postern(
            ctx,
            stack,
            where / "postern",
            users,
            result,
            needs=("smtp", "delivery", "imap"),
            with_filter=True,
        )
        if postern is not None:
            drivers["postern"] = FlowDriver(
                postern.pids, postern.smtp_port, postern.imap_port, p, msg_file, body
            )
        try:
            dovecot = start_dovecot(ctx, stack, ctx.dir(self.id, "dovecot"), users)
            postfix = start_postfix(ctx, stack, ctx.dir(self.id, "postfix"), dovecot)
        except PeerSetupError as exc:
            result.unavailable["peer"] = str(exc)
        else:

            def peer_pids() -> list[int]:
                return [pid for pid in (postfix.pid, dovecot.pid) if pid is not None]

            drivers["peer"] = FlowDriver(
                peer_pids, postfix.smtp_port, dovecot.ports.imap, p, msg_file, body
            )
        result.notes.append(
            f"{p['messages']} messages of {p['size']} bytes per run, smtp-source -s "
            f"{p['sessions']} (a new connection per message); throughput runs until the "
            "last message is visible over IMAP (STATUS); latency probes run during the load"
        )
        return drivers
