"""W3: store delivery drain from a 10,000-message backlog.

Postern: ``python -m bench.store_drain --messages N --size S --json OUT`` (the storage
engine's own benchmark program: it pre-loads MAIL_INBOUND with N messages, then times the
store's delivery consumer draining it with per-message durability). The harness reads the
rate from OUT and meters the program's process tree.

Peer: Dovecot's LMTP delivering the same number of messages, driven by ``smtp-source -L``
with a fixed number of concurrent LMTP sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from bench.loadgen.populate import imap_count
from bench.loadgen.smtp_flow import smtp_source_argv
from bench.peers.dovecot import Dovecot
from bench.peers.mailuser import PeerSetupError
from bench.procs import run_metered
from bench.profiling import Profiler
from bench.results import MetricDef, Side, WorkloadResult
from bench.workloads.base import (
    DOMAIN,
    PASSWORD,
    ROOT,
    Context,
    Driver,
    Sample,
    Workload,
    python_module,
)
from bench.workloads.common import start_dovecot, write_message_files

DRAIN_PROGRAM = ROOT / "bench" / "store_drain.py"
RATE_KEYS = ("rate", "messages_per_second", "msgs_per_s", "drain_rate", "per_second")
SECONDS_KEYS = ("seconds", "drain_seconds", "elapsed", "elapsed_s", "duration")


def drain_rate(data: dict[str, Any]) -> float:
    """The drain rate in a store_drain JSON report (a rate key, or messages / seconds)."""
    for key in RATE_KEYS:
        if isinstance(data.get(key), int | float) and data[key] > 0:
            return float(data[key])
    messages = data.get("messages")
    for key in SECONDS_KEYS:
        seconds = data.get(key)
        if isinstance(seconds, int | float) and seconds > 0 and isinstance(messages, int):
            return messages / seconds
    raise ValueError(f"no drain rate in store_drain's report: {sorted(data)}")


def supports_option(module: str, option: str) -> bool:
    proc = subprocess.run(
        python_module(module, "--help"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    return option in proc.stdout


class DrainPhase:
    """Samples store_drain's process tree to separate the drain from the pre-load.

    store_drain first publishes the backlog, then starts ``python -m services.store``;
    the drain's cost is the store process's CPU over its life plus nats-server's CPU while
    the store runs, and its memory the sum of both (sampled every ``interval``; the last
    interval before the store exits is not seen, a few tens of milliseconds of CPU).
    """

    def __init__(self, interval: float = 0.1, profiler: Profiler | None = None) -> None:
        self.interval = interval
        self.profiler = profiler
        self.root: int | None = None
        self.store_cpu = 0.0
        self.nats_cpu0: float | None = None
        self.nats_cpu1 = 0.0
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drain-phase", daemon=True)

    def start(self, pid: int) -> None:
        self.root = pid
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def cpu(self) -> float:
        nats = self.nats_cpu1 - self.nats_cpu0 if self.nats_cpu0 is not None else 0.0
        return self.store_cpu + max(0.0, nats)

    def _run(self) -> None:
        import psutil  # type: ignore[import-untyped]

        from bench.meter import memory, tree

        while not self._stop.wait(self.interval):
            assert self.root is not None
            procs = tree([self.root])
            store = nats = None
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    cmd = " ".join(proc.cmdline())
                    if "services.store" in cmd:
                        store = proc
                    elif "nats-server" in cmd:
                        nats = proc
            if store is None:
                continue
            if self.profiler is not None:
                self.profiler.attach(store.pid, "store")
                self.profiler = None
            rss, pss = memory([p for p in (store, nats) if p is not None], pss=True)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            with contextlib.suppress(psutil.Error):
                t = store.cpu_times()
                self.store_cpu = max(self.store_cpu, float(t.user + t.system))
            if nats is not None:
                with contextlib.suppress(psutil.Error):
                    t = nats.cpu_times()
                    cpu = float(t.user + t.system)
                    if self.nats_cpu0 is None:
                        self.nats_cpu0 = cpu
                    self.nats_cpu1 = cpu


class StoreDrain(Driver):
    def __init__(self, ctx: Context, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.params = params
        self.pid: int | None = None
        self.concurrency = supports_option("bench.store_drain", "--concurrency")
        self.phase = DrainPhase()

    def pids(self) -> list[int]:
        return []  # metered by DrainPhase: the pre-load is not the drain

    def _started(self, pid: int) -> None:
        self.pid = pid
        self.phase.start(pid)

    def run_once(self, run: int) -> Sample:
        p = self.params
        out = self.ctx.rundir / f"W3-store_drain-{run + 1}.json"
        argv = python_module(
            "bench.store_drain",
            "--messages",
            str(p["messages"]),
            "--size",
            str(p["size"]),
            "--json",
            str(out),
        )
        if self.concurrency:
            argv += ["--concurrency", str(p["concurrency"])]
        self.phase = DrainPhase(profiler=self.profiler)
        try:
            done = run_metered(
                argv,
                timeout=p["timeout"],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=str(ROOT),
                on_start=self._started,
            )
        finally:
            self.phase.stop()
            self.pid = None
        if done.returncode != 0:
            raise RuntimeError(f"store_drain exited with {done.returncode}: {done.stderr[-500:]}")
        data = json.loads(out.read_text())
        notes = [f"store_drain report: {json.dumps(data, sort_keys=True)[:400]}"]
        return Sample(
            values={"rate": drain_rate(data)},
            side_cpu=self.phase.cpu,
            side_rss=self.phase.peak_rss,
            side_pss=self.phase.peak_pss,
            loadgen_cpu=max(0.0, done.cpu_s - self.phase.cpu),
            notes=notes,
        )


class LmtpDelivery(Driver):
    def __init__(self, dovecot: Dovecot, params: dict[str, Any], msg_file: Path) -> None:
        self.dovecot = dovecot
        self.params = params
        self.msg_file = msg_file

    def pids(self) -> list[int]:
        return [self.dovecot.pid] if self.dovecot.pid else []

    def run_once(self, run: int) -> Sample:
        p = self.params
        rcpt = f"w3run{run + 1}@{DOMAIN}"
        argv = smtp_source_argv(
            self.dovecot.ports.lmtp,
            messages=p["messages"],
            sessions=p["concurrency"],
            msg_file=self.msg_file,
            rcpt=rcpt,
            lmtp=True,
        )
        done = run_metered(argv, timeout=p["timeout"])
        if done.returncode != 0:
            raise RuntimeError(f"smtp-source -L exited with {done.returncode}: {done.stderr}")
        got = asyncio.run(imap_count(self.dovecot.ports.imap, rcpt, PASSWORD))
        if got != p["messages"]:
            raise RuntimeError(f"{got} of {p['messages']} messages delivered")
        return Sample(values={"rate": p["messages"] / done.wall_s}, loadgen_cpu=done.cpu_s)


class DeliveryDrain(Workload):
    id = "W3"
    title = "store delivery drain from a 10,000-message backlog"
    peer_name = "Dovecot LMTP"
    metrics = [MetricDef("rate", "messages delivered per second", "msg/s", True, 2.0)]

    def params(self, ctx: Context) -> dict[str, Any]:
        return {
            "messages": 1000 if ctx.quick else 10_000,
            "size": 10 * 1024,
            "concurrency": 20,
            "timeout": 900,
        }

    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        p = result.params
        drivers: dict[Side, Driver] = {}
        if DRAIN_PROGRAM.exists():
            drivers["postern"] = StoreDrain(ctx, p)
        else:
            result.unavailable["postern"] = (
                "not available yet: bench/store_drain.py (from the storage issue) is not there"
            )
        where = ctx.dir(self.id)
        msg_file, _ = write_message_files(where, p["size"], f"w3@{DOMAIN}")
        users = {f"w3run{r + 1}@{DOMAIN}": PASSWORD for r in range(self.runs(ctx))}
        try:
            dovecot = start_dovecot(ctx, stack, ctx.dir(self.id, "dovecot"), users)
        except PeerSetupError as exc:
            result.unavailable["peer"] = str(exc)
        else:
            drivers["peer"] = LmtpDelivery(dovecot, p, msg_file)
        result.notes.append(
            "Postern: bench/store_drain.py pre-loads MAIL_INBOUND, then times the store's "
            "delivery consumer from the first to the last delivery (fsync on); its CPU and "
            "memory are the store's and nats-server's during the drain only"
        )
        result.notes.append(
            f"{p['messages']} messages of {p['size']} bytes per run; Dovecot: smtp-source -L "
            f"with {p['concurrency']} concurrent LMTP sessions, into a fresh mailbox per run"
        )
        return drivers
