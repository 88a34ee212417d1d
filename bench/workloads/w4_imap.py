"""W4: an IMAP mix on a 10,000-message mailbox (peer: Dovecot).

Many concurrent sessions share one mailbox (:mod:`bench.loadgen.imap_mix`), driven by one
or more load generator processes. Reported: commands per second overall and per command
type, and each type's median latency. Within one run the types come in the mix's fixed
proportions, so the per-type rates move together; the per-type latencies show where a
server spends its time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bench.loadgen.imap_mix import MIX
from bench.loadgen.wire import Imap
from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import (
    DOMAIN,
    PASSWORD,
    Context,
    Driver,
    Sample,
    Workload,
    python_module,
    run_json_parallel,
)
from bench.workloads.mailboxes import imap_drivers, shared_mailboxes

KINDS = ["LOGIN", "SELECT", *MIX, "LOGOUT"]
ADDRESS = f"imap@{DOMAIN}"


class ImapMix(Driver):
    def __init__(self, port: int, pids: Any, params: dict[str, Any]) -> None:
        self.port = port
        self._pids = pids
        self.params = params

    def pids(self) -> list[int]:
        return list(self._pids())

    def run_once(self, run: int) -> Sample:
        p = self.params
        procs = p["processes"]
        argvs = []
        for i in range(procs):
            sessions = p["sessions"] // procs + (1 if i < p["sessions"] % procs else 0)
            argv = python_module(
                "bench.loadgen.imap_mix",
                "--port",
                str(self.port),
                "--user",
                ADDRESS,
                "--password",
                PASSWORD,
                "--sessions",
                str(sessions),
                "--duration",
                str(p["duration"]),
                "--warmup",
                str(p["warmup"]),
                "--mailbox-size",
                str(p["mailbox"]),
                "--seed",
                str(run * 100 + i + 1),
            )
            argvs.append(argv)
        results = run_json_parallel(argvs, timeout=p["duration"] + p["warmup"] + 120)
        values, notes = combine([r[0] for r in results])
        asyncio.run(expunge_leftovers(self.port))
        return Sample(values=values, loadgen_cpu=sum(r[1] for r in results), notes=notes)


def combine(outs: list[dict[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """Add up the load generator processes' counts into rates; latencies: the median of
    the processes' medians (they run the same mix)."""
    seconds = sum(o["seconds"] for o in outs) / len(outs)
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    for o in outs:
        for k, n in o["counts"].items():
            counts[k] = counts.get(k, 0) + n
        for k, n in o["errors"].items():
            errors[k] = errors.get(k, 0) + n
    values = {"cmds": sum(counts.values()) / seconds}
    for k in KINDS:
        values[f"rate.{k}"] = counts.get(k, 0) / seconds
        lats = sorted(o["latency_ms"][k]["p50"] for o in outs if k in o.get("latency_ms", {}))
        if lats:
            values[f"p50.{k}"] = lats[len(lats) // 2]
    notes = []
    if errors:
        notes.append("errors: " + ", ".join(f"{k} {n}" for k, n in sorted(errors.items())))
    broken = sum(o.get("broken_connections", 0) for o in outs)
    if broken:
        notes.append(f"{broken} connections broke mid-visit")
    notes.append(f"{sum(o['visits'] for o in outs)} visits")
    return values, notes


async def expunge_leftovers(port: int, address: str = ADDRESS) -> None:
    """Remove messages appended during the run (they carry \\Deleted)."""
    conn = await Imap.connect("127.0.0.1", port)
    try:
        await conn.login(address, PASSWORD)
        await conn.select("INBOX")
        await conn.command(b"EXPUNGE")
    finally:
        await conn.logout()


class ImapWorkload(Workload):
    id = "W4"
    title = "IMAP mix on a 10,000-message mailbox"
    peer_name = "Dovecot"
    metrics = [
        MetricDef("cmds", "commands per second, whole mix", "cmd/s", True, 0.5),
        *(MetricDef(f"rate.{k}", f"{k} per second", "cmd/s", True, main=False) for k in KINDS),
        *(MetricDef(f"p50.{k}", f"{k} median latency", "ms", False, main=False) for k in KINDS),
    ]

    def params(self, ctx: Context) -> dict[str, Any]:
        return {
            "mailbox": 1000 if ctx.quick else 10_000,
            "size": 10 * 1024,
            "sessions": 8 if ctx.quick else 24,
            "processes": 1 if ctx.quick else 2,
            "duration": 5.0 if ctx.quick else 30.0,
            "warmup": 1.0 if ctx.quick else 3.0,
        }

    def mailbox_accounts(self, ctx: Context) -> dict[str, int]:
        return {ADDRESS: int(self.params(ctx)["mailbox"])}

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        boxes = shared_mailboxes(ctx, result, p["size"])
        drivers = imap_drivers(boxes, result, lambda port, pids: ImapMix(port, pids, p))
        mix = ", ".join(f"{k} {w}%" for k, w in MIX.items())
        result.notes.append(
            f"{p['sessions']} sessions in {p['processes']} load generator process(es) on one "
            f"{p['mailbox']}-message mailbox, {p['duration']:.0f}s measured after "
            f"{p['warmup']:.0f}s warm-up. Each visit: LOGIN, SELECT, 5–30 commands "
            f"({mix}), LOGOUT"
        )
        if boxes.fill_seconds:
            result.notes.append(
                "mailboxes filled in "
                + ", ".join(f"{s} {t:.0f}s" for s, t in boxes.fill_seconds.items())
                + (f" (Postern: {boxes.postern_fill})" if boxes.postern_fill else "")
            )
        return drivers
