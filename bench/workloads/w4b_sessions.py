"""W4b: many IMAP sessions, each kept logged in on its own small mailbox (peer: Dovecot).

The shape of issue 20: every session owns a mailbox of ~200 messages of 1–50 KiB and sends
a random write-heavy mix (:data:`bench.loadgen.imap_sessions.MIX`: LIST, STATUS, SELECT,
FETCH of flags, envelopes, headers and bodies, STORE of flags and keywords, APPEND,
EXPUNGE) back to back. One run of a side measures each session count in turn (10, then
50); the sides alternate which goes first from run to run (:func:`run_workload`).

Reported per session count: commands per second; the server's CPU per command (its CPU
from the load generators' start to their exit, divided by every command they completed
there, logins and warm-up included); and each command type's p50 and p99 latency inside
the window, from the load generators' merged histograms.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bench.corpus import SMALL_MAX, SMALL_MIN, mixed_size
from bench.loadgen.imap_sessions import KINDS, MIX
from bench.results import MetricDef, Side, WorkloadResult
from bench.stats import histogram_percentile, merge_histograms
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
from bench.workloads.mailboxes import imap_drivers, start_filled

USER_FORMAT = "own{n}@" + DOMAIN
P99_TARGET = 0.5  # issue 20: p99 per command type at most 2× Dovecot's


def account(n: int) -> str:
    return USER_FORMAT.format(n=n)


def split(sessions: int, processes: int) -> list[tuple[int, int]]:
    """(first account, sessions) of each load generator process: every account once."""
    out = []
    first = 0
    for i in range(max(1, min(processes, sessions))):
        n = sessions // processes + (1 if i < sessions % processes else 0)
        out.append((first, n))
        first += n
    return out


def phase_values(
    sessions: int, outs: list[dict[str, Any]], server_cpu_s: float
) -> tuple[dict[str, float], list[str]]:
    """The figures of one session count from its load generators' JSON and the server's
    CPU seconds over the phase. Keys end in ``@<sessions>``."""
    at = f"@{sessions}"
    seconds = sum(o["seconds"] for o in outs) / len(outs)
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    for o in outs:
        for k, n in o["counts"].items():
            counts[k] = counts.get(k, 0) + n
        for k, n in o["errors"].items():
            errors[k] = errors.get(k, 0) + n
    done = sum(o["commands_done"] for o in outs)
    values = {f"cmds{at}": sum(counts.values()) / seconds}
    if done:
        values[f"cpu_ms{at}"] = 1000 * server_cpu_s / done
    for k in KINDS:
        # JSON keys are strings; merge_histograms makes them bucket numbers again.
        hist = merge_histograms(
            [o["login_hist"] if k == "LOGIN" else o["latency_hist"].get(k, {}) for o in outs]
        )
        for pct in (50, 99):
            v = histogram_percentile(hist, pct)
            if v is not None:
                values[f"p{pct}.{k}{at}"] = 1000 * v
    notes = [f"{sessions} sessions: {done} commands, {sum(o['logins'] for o in outs)} logins"]
    if errors:
        notes.append(
            f"{sessions} sessions: errors "
            + ", ".join(f"{k} {n}" for k, n in sorted(errors.items()))
        )
    broken = sum(o.get("broken_connections", 0) for o in outs)
    if broken:
        notes.append(f"{sessions} sessions: {broken} connections broke")
    return values, notes


class SessionsMix(Driver):
    def __init__(self, port: int, pids: Any, params: dict[str, Any]) -> None:
        self.port = port
        self._pids = pids
        self.params = params

    def pids(self) -> list[int]:
        return list(self._pids())

    def run_once(self, run: int) -> Sample:
        from bench.meter import cpu_delta, cpu_snapshot  # psutil: only when measuring

        p = self.params
        values: dict[str, float] = {}
        notes: list[str] = []
        loadgen_cpu = 0.0
        for sessions in p["sessions"]:
            argvs = [
                python_module(
                    "bench.loadgen.imap_sessions",
                    *("--port", str(self.port), "--password", PASSWORD),
                    *("--user-format", USER_FORMAT, "--first", str(first)),
                    *("--sessions", str(n), "--mailbox-size", str(p["mailbox"])),
                    *("--duration", str(p["duration"]), "--warmup", str(p["warmup"])),
                    *("--seed", str(run * 100 + i + 1)),
                )
                for i, (first, n) in enumerate(split(sessions, p["processes"]))
            ]
            before = cpu_snapshot(self.pids())
            results = run_json_parallel(argvs, timeout=p["duration"] + p["warmup"] + 180)
            server_cpu = cpu_delta(before, cpu_snapshot(self.pids()))
            v, n = phase_values(sessions, [r[0] for r in results], server_cpu)
            values |= v
            notes += n
            loadgen_cpu += sum(r[1] for r in results)
        return Sample(values=values, loadgen_cpu=loadgen_cpu, notes=notes)


class SessionsWorkload(Workload):
    id = "W4b"
    title = "IMAP sessions kept logged in, each on its own 200-message mailbox"
    peer_name = "Dovecot"

    def params(self, ctx: Context) -> dict[str, Any]:
        quick = ctx.quick
        return {
            "sessions": [4, 8] if quick else [10, 50],
            "mailbox": 40 if quick else 200,
            "sizes": f"{SMALL_MIN // 1024}–{SMALL_MAX // 1024} KiB",
            "processes": 1 if quick else 2,
            "duration": ctx.duration or (5.0 if quick else 60.0),
            "warmup": 1.0 if quick else 5.0,
        }

    def metric_defs(self, ctx: Context) -> list[MetricDef]:
        sessions = self.params(ctx)["sessions"]
        out = []
        for s in sessions:
            out.append(
                MetricDef(f"cmds@{s}", f"commands per second, {s} sessions", "cmd/s", True, 1.0)
            )
        for s in sessions:
            out.append(
                MetricDef(f"cpu_ms@{s}", f"server CPU per command, {s} sessions", "ms/cmd", False)
            )
        for s in sessions:
            for k in KINDS:
                out.append(
                    MetricDef(f"p50.{k}@{s}", f"{k} p50, {s} sessions", "ms", False, main=False)
                )
                out.append(
                    MetricDef(
                        f"p99.{k}@{s}",
                        f"{k} p99, {s} sessions",
                        "ms",
                        False,
                        P99_TARGET,
                        main=False,
                    )
                )
        return out

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        accounts = {account(n): p["mailbox"] for n in range(max(p["sessions"]))}
        boxes = start_filled(ctx, stack, self.id, accounts, mixed_size)
        drivers = imap_drivers(boxes, result, lambda port, pids: SessionsMix(port, pids, p))
        mix = ", ".join(f"{k} {w}%" for k, w in MIX.items())
        result.notes.append(
            f"{' then '.join(map(str, p['sessions']))} sessions (one account each, "
            f"{p['mailbox']} messages of {p['sizes']}, log-uniform) in {p['processes']} load "
            f"generator process(es); each session logs in once and sends commands back to "
            f"back ({mix}); {p['duration']:.0f}s measured from {p['warmup']:.0f}s after the "
            "last login. CPU per command: the server's CPU from the load generators' start to "
            "their exit over every command they completed (logins included). Latencies: "
            "p50/p99 inside the window (LOGIN: every login, connect and greeting included)"
        )
        if boxes.fill_seconds:
            result.notes.append(
                "mailboxes filled in "
                + ", ".join(f"{s} {t:.0f}s" for s, t in boxes.fill_seconds.items())
                + (f" (Postern: {boxes.postern_fill})" if boxes.postern_fill else "")
            )
        return drivers
