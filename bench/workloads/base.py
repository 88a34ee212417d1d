"""What every workload shares: its context, the two sides, and the run loop.

A workload sets up both sides (:meth:`Workload.setup`) and returns a :class:`Driver` for
each side that can run; :func:`run_workload` then runs every side ``runs`` times,
alternating which side goes first, metering each run (CPU, peak memory, how busy the rest
of the machine was), and tears everything down, whatever happens.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import load_average, now
from bench.procs import Finished, run_metered
from bench.profiling import Profiler, py_spy, python_processes
from bench.results import SIDES, MetricDef, Side, SideRun, WorkloadResult

ROOT = Path(__file__).resolve().parent.parent.parent
DOMAIN = "bench.test"
PASSWORD = "bench-password-1"  # every benchmark account's (loopback only, throwaway)


@dataclass
class Context:
    workdir: Path  # this bench invocation's scratch directory (peers' spools, Postern's data)
    rundir: Path  # where raw per-run files go (bench/results/runs/<stamp>/)
    quick: bool = False
    runs: int = 3
    profile: bool = False
    duration: float | None = None  # measured seconds per run, for timed workloads (--duration)
    log: Callable[[str], None] = print
    shared: dict[str, Any] = field(default_factory=dict)
    cleanups: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def dir(self, *parts: str) -> Path:
        d = self.workdir.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
        return d


@dataclass
class Sample:
    """What one run of one side measured."""

    values: dict[str, float]
    side_cpu: float = 0.0  # CPU of side processes that exited inside the run (wait4)
    side_rss: int = 0  # and their largest RSS
    side_pss: int = 0
    loadgen_cpu: float | None = None
    notes: list[str] = field(default_factory=list)


class Driver(abc.ABC):
    """Runs one side of a workload."""

    profiler: Profiler | None = None  # set during a profiled run (--profile)

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Roots of the side's process trees (metered for CPU and memory)."""

    @abc.abstractmethod
    def run_once(self, run: int) -> Sample:
        """One measured run; raise to record a failed run."""


class Workload(abc.ABC):
    id: str = ""
    title: str = ""
    peer_name: str = ""
    metrics: list[MetricDef] = []

    def params(self, ctx: Context) -> dict[str, Any]:
        """Sizes of this workload (smaller with --quick)."""
        return {}

    def metric_defs(self, ctx: Context) -> list[MetricDef]:
        return list(self.metrics)

    def runs(self, ctx: Context) -> int:
        """Runs per side (``--runs``; a noisy workload may ask for more)."""
        return ctx.runs

    def mailbox_accounts(self, ctx: Context) -> dict[str, int]:
        """Pre-loaded mailboxes this workload needs (see bench.workloads.mailboxes)."""
        return {}

    @abc.abstractmethod
    def setup(
        self, ctx: Context, result: WorkloadResult, stack: contextlib.ExitStack
    ) -> dict[Side, Driver]:
        """Start both sides (cleanups go on ``stack``); a side that cannot run is left out
        and ``result.unavailable[side]`` says why."""


def run_workload(w: Workload, ctx: Context) -> WorkloadResult:
    params = w.params(ctx)
    result = WorkloadResult(
        id=w.id,
        title=w.title,
        peer_name=w.peer_name,
        metrics=w.metric_defs(ctx),
        params=params,
        started_at=now(),
        load_before=load_average(),
        quick=ctx.quick,
    )
    ctx.log(f"== {w.id}: {w.title}  {params}")
    with contextlib.ExitStack() as stack:
        try:
            drivers = w.setup(ctx, result, stack)
        except Exception as exc:
            ctx.log(f"!! {w.id} setup failed: {exc}")
            traceback.print_exc(file=sys.stderr)
            for side in SIDES:
                result.unavailable.setdefault(side, f"setup failed: {_short(exc)}")
            drivers = {}
        for name, why in result.unavailable.items():
            ctx.log(f"   {name}: {why}")
        if drivers:
            for run in range(w.runs(ctx)):
                order = list(SIDES) if run % 2 == 0 else list(reversed(SIDES))
                for side in order:
                    if side in drivers:
                        result.runs.append(_one_run(w, ctx, side, run, drivers[side], result))
                        _save_run(ctx, w, result.runs[-1])
    result.finished_at = now()
    result.load_after = load_average()
    return result


def _one_run(
    w: Workload, ctx: Context, side: Side, run: int, driver: Driver, result: WorkloadResult
) -> SideRun:
    from bench.meter import Meter  # psutil: only when measuring

    meter = Meter({side: driver.pids})
    t0 = time.monotonic()
    profiled = ctx.profile and side == "postern" and run == 0 and py_spy() is not None
    if profiled:
        driver.profiler = Profiler(ctx.rundir / "profiles", w.id)
        for pid, label in python_processes(driver.pids()):
            driver.profiler.attach(pid, label)
    try:
        with meter:
            sample = driver.run_once(run)
    except Exception as exc:
        ctx.log(f"!! {w.id} {side} run {run + 1} failed: {_short(exc)}")
        traceback.print_exc(file=sys.stderr)
        return SideRun(side=side, run=run, error=_short(exc), wall_s=time.monotonic() - t0)
    finally:
        if driver.profiler is not None:
            result.profiles.update(driver.profiler.stop())
            driver.profiler = None
    if profiled:
        sample.notes.append("run 1 was profiled with py-spy")
    usage = meter.usage[side]
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sample.values.items() if "." not in k)
    ctx.log(
        f"   {w.id} {side:7} run {run + 1}: {shown}  "
        f"(cpu {usage.cpu_s + sample.side_cpu:.1f}s, other load {usage.foreign_busy_cores:.2f})"
    )
    return SideRun(
        side=side,
        run=run,
        values=sample.values,
        cpu_s=usage.cpu_s + sample.side_cpu,
        peak_rss=max(usage.peak_rss, sample.side_rss) or None,
        peak_pss=max(usage.peak_pss, sample.side_pss) or None,
        wall_s=usage.wall_s,
        loadgen_cpu_s=sample.loadgen_cpu,
        machine_busy_cores=usage.machine_busy_cores,
        foreign_busy_cores=usage.foreign_busy_cores,
        notes=sample.notes,
    )


def _save_run(ctx: Context, w: Workload, run: SideRun) -> None:
    from dataclasses import asdict

    path = ctx.rundir / f"{w.id}-{run.side}-{run.run + 1}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(run), indent=1) + "\n")


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_json(
    argv: list[str], *, timeout: float, on_start: Callable[[int], None] | None = None
) -> tuple[dict[str, Any], Finished]:
    """Run a load generator that prints one JSON object; raise if it fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = run_metered(argv, timeout=timeout, env=env, cwd=str(ROOT), on_start=on_start)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} exited with {done.returncode}: {done.stderr.strip()[-500:]}"
        )
    try:
        return json.loads(done.stdout.strip().splitlines()[-1]), done
    except (ValueError, IndexError):
        raise RuntimeError(f"no JSON from {' '.join(argv[:4])}: {done.stdout[-300:]!r}") from None


def run_json_parallel(
    argvs: list[list[str]], *, timeout: float
) -> list[tuple[dict[str, Any], float]]:
    """Run several load generators at once (one thread each waits for its process);
    return each one's JSON and CPU seconds, or raise the first failure."""
    outs: list[tuple[dict[str, Any], float] | BaseException] = [RuntimeError("no result")] * len(
        argvs
    )

    def one(i: int) -> None:
        try:
            out, done = run_json(argvs[i], timeout=timeout)
            outs[i] = (out, done.cpu_s)
        except BaseException as exc:
            outs[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(argvs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        if isinstance(o, BaseException):
            raise o
    return [o for o in outs if not isinstance(o, BaseException)]
