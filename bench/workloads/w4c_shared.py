"""W4c: fifty long-lived sessions changing one mailbox at once (peer: Dovecot).

Every session stays logged in with INBOX selected and does APPEND, STORE, FETCH, expunge,
COPY and MOVE (:mod:`bench.loadgen.imap_shared`), so the server keeps fifty views of one
mailbox up to date while they all change it (issue 15). Reported: the p99 latency of all
commands (the main figure: a client waiting seconds for a reply is what users notice),
commands per second, and p50/p99 per command type.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from bench.loadgen.imap_shared import MIX
from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import (
    DOMAIN,
    PASSWORD,
    Context,
    Driver,
    Sample,
    Workload,
    python_module,
    run_json,
)
from bench.workloads.mailboxes import imap_drivers, shared_mailboxes
from bench.workloads.w4_imap import expunge_leftovers

ADDRESS = f"sessions@{DOMAIN}"
KINDS = list(MIX)


class SessionMix(Driver):
    def __init__(self, port: int, pids: Any, params: dict[str, Any]) -> None:
        self.port = port
        self._pids = pids
        self.params = params

    def pids(self) -> list[int]:
        return list(self._pids())

    def run_once(self, run: int) -> Sample:
        p = self.params
        procs = p["processes"]
        outs: list[tuple[dict[str, Any], float] | BaseException] = [
            RuntimeError("no result")
        ] * procs

        def one(i: int) -> None:
            sessions = p["sessions"] // procs + (1 if i < p["sessions"] % procs else 0)
            argv = python_module(
                "bench.loadgen.imap_shared",
                *("--port", str(self.port), "--user", ADDRESS, "--password", PASSWORD),
                *("--sessions", str(sessions), "--duration", str(p["duration"])),
                *("--warmup", str(p["warmup"]), "--mailbox-size", str(p["mailbox"])),
                *("--seed", str(run * 100 + i + 1)),
            )
            try:
                out, done = run_json(argv, timeout=p["duration"] + p["warmup"] + 120)
                outs[i] = (out, done.cpu_s)
            except BaseException as exc:
                outs[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(procs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for o in outs:
            if isinstance(o, BaseException):
                raise o
        results = [o for o in outs if not isinstance(o, BaseException)]
        values, notes = combine([r[0] for r in results])
        asyncio.run(expunge_leftovers(self.port, ADDRESS))
        return Sample(values=values, loadgen_cpu=sum(r[1] for r in results), notes=notes)


def combine(outs: list[dict[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """Rates add up over the load generator processes; latency percentiles are the worst
    process's (each saw a random half of the same mix)."""
    seconds = sum(o["seconds"] for o in outs) / len(outs)
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    for o in outs:
        for k, n in o["counts"].items():
            counts[k] = counts.get(k, 0) + n
        for k, n in o["errors"].items():
            errors[k] = errors.get(k, 0) + n
    values = {
        "p99": max(o["all_ms"]["p99"] for o in outs),
        "p50": max(o["all_ms"]["p50"] for o in outs),
        "max": max(o["all_ms"]["max"] for o in outs),
        "cmds": sum(counts.values()) / seconds,
    }
    for k in KINDS:
        for q in ("p50", "p99"):
            found = [o["latency_ms"][k][q] for o in outs if k in o["latency_ms"]]
            if found:
                values[f"{q}.{k}"] = max(found)
    notes = []
    if errors:
        notes.append("errors: " + ", ".join(f"{k} {n}" for k, n in sorted(errors.items())))
    broken = sum(o.get("broken_connections", 0) for o in outs)
    if broken:
        notes.append(f"{broken} connections broke")
    return values, notes


class SharedMailboxWorkload(Workload):
    id = "W4c"
    title = "50 sessions changing one mailbox at once"
    peer_name = "Dovecot"
    metrics = [
        MetricDef("p99", "p99 command latency, all commands", "ms", False, 1.0),
        MetricDef("cmds", "commands per second", "cmd/s", True),
        MetricDef("p50", "median command latency", "ms", False, main=False),
        MetricDef("max", "slowest command", "ms", False, main=False),
        *(MetricDef(f"p50.{k}", f"{k} median latency", "ms", False, main=False) for k in KINDS),
        *(MetricDef(f"p99.{k}", f"{k} p99 latency", "ms", False, main=False) for k in KINDS),
    ]

    def params(self, ctx: Context) -> dict[str, Any]:
        return {
            "mailbox": 200 if ctx.quick else 1000,
            "size": 10 * 1024,
            "sessions": 50,
            "processes": 2,
            "duration": 5.0 if ctx.quick else 20.0,
            "warmup": 1.0 if ctx.quick else 2.0,
        }

    def mailbox_accounts(self, ctx: Context) -> dict[str, int]:
        return {ADDRESS: int(self.params(ctx)["mailbox"])}

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        boxes = shared_mailboxes(ctx, result, p["size"])
        drivers = imap_drivers(boxes, result, lambda port, pids: SessionMix(port, pids, p))
        mix = ", ".join(f"{k} {w}%" for k, w in MIX.items())
        result.notes.append(
            f"{p['sessions']} sessions in {p['processes']} load generator processes, each "
            f"logged in once with INBOX of one {p['mailbox']}-message mailbox selected, "
            f"{p['duration']:.0f}s measured after {p['warmup']:.0f}s warm-up ({mix})"
        )
        return drivers
