"""CPU seconds and peak memory of a side's process trees, measured with psutil.

CPU: a process's own user+system time plus the time of the children it has reaped
(``children_user``/``children_system``), summed over every live process of the trees, at
the start and at the end of a run; the difference is the run's CPU. A process that dies
during the run is counted through the parent that reaped it (servers like Dovecot and
Postfix fork and reap many short-lived processes), so nothing is lost or counted twice.

Memory: a sampling thread adds up the trees' RSS (and PSS, which shares shared pages out
fairly between processes) every ``interval`` seconds and keeps the peaks. Summed RSS
overstates multi-process servers, whose processes share libraries; PSS does not.

The meter also samples the whole machine's CPU, so a run can say how busy the machine was
with work that is neither side nor load generator (another engineer's test suite).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]

CpuTimes = dict[int, float]


def _proc_cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def tree(roots: Iterable[int]) -> list[psutil.Process]:
    """Every live process of the trees rooted at ``roots`` (each once)."""
    seen: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            seen.setdefault(root.pid, root)
            for child in root.children(recursive=True):
                seen.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(seen.values())


def _self_cpu() -> float:
    """This process's CPU plus that of every child it has reaped."""
    t = psutil.Process().cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def cpu_snapshot(roots: Iterable[int]) -> CpuTimes:
    out: CpuTimes = {}
    for p in tree(roots):
        with contextlib.suppress(psutil.Error):
            out[p.pid] = _proc_cpu(p)
    return out


def cpu_delta(before: CpuTimes, after: CpuTimes) -> float:
    """CPU seconds used between two snapshots of the same trees.

    A process gone by ``after`` was reaped by a parent in the trees, whose children_*
    times now hold its whole life; its ``before`` figure is subtracted so only the part in
    the window counts. (A process reaped by something outside the trees is lost: not the
    case for the daemons metered here.)
    """
    return max(0.0, sum(after.values()) - sum(before.values()))


def memory(procs: Iterable[psutil.Process], *, pss: bool) -> tuple[int, int]:
    """(sum of RSS, sum of PSS or 0) in bytes."""
    rss = 0
    pss_total = 0
    for p in procs:
        try:
            if pss:
                info = p.memory_full_info()
                rss += int(info.rss)
                pss_total += int(getattr(info, "pss", 0))
            else:
                rss += int(p.memory_info().rss)
        except psutil.Error:
            continue
    return rss, pss_total


@dataclass(slots=True)
class Usage:
    """What one group used during a metered block."""

    cpu_s: float
    peak_rss: int
    peak_pss: int
    wall_s: float
    machine_busy_cores: float  # all CPU used on the machine during the run, in cores
    foreign_busy_cores: float  # of that, by processes that are not metered


class Meter:
    """Meters named groups of process trees for the duration of a ``with`` block.

    ``groups`` maps a name ("postern", "peer", "loadgen") to a callable giving the
    current root pids (a callable, as a load generator starts inside the block).

    Processes that exit inside the block and are reaped by the harness (a load generator,
    a one-shot benchmark program) are not in any tree at the end: the caller adds their
    CPU (from ``os.wait4``, see :func:`bench.procs.run_metered`) to ``extra_cpu[name]``.
    """

    def __init__(
        self, groups: dict[str, Callable[[], list[int]]], *, interval: float = 0.25
    ) -> None:
        self.groups = groups
        self.interval = interval
        self.usage: dict[str, Usage] = {}
        self._peak_rss: dict[str, int] = dict.fromkeys(groups, 0)
        self._peak_pss: dict[str, int] = dict.fromkeys(groups, 0)
        self._cpu_start: dict[str, CpuTimes] = {}
        self.extra_cpu: dict[str, float] = {}
        self._self0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._sys0: float = 0.0

    def _sample(self) -> None:
        for name, roots in self.groups.items():
            rss, pss = memory(tree(roots()), pss=True)
            self._peak_rss[name] = max(self._peak_rss[name], rss)
            self._peak_pss[name] = max(self._peak_pss[name], pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @staticmethod
    def _machine_cpu() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))

    def __enter__(self) -> Meter:
        for name, roots in self.groups.items():
            self._cpu_start[name] = cpu_snapshot(roots())
        self._sample()
        self._t0 = time.monotonic()
        self._sys0 = self._machine_cpu()
        self._self0 = _self_cpu()
        self._thread = threading.Thread(target=self._run, name="bench-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        wall = max(1e-9, time.monotonic() - self._t0)
        machine = max(0.0, self._machine_cpu() - self._sys0)
        ours = 0.0
        for name, roots in self.groups.items():
            cpu = cpu_delta(self._cpu_start[name], cpu_snapshot(roots()))
            ours += cpu  # (extra_cpu is in the harness's reaped-children time below)
            cpu += self.extra_cpu.get(name, 0.0)
            self.usage[name] = Usage(
                cpu_s=cpu,
                peak_rss=self._peak_rss[name],
                peak_pss=self._peak_pss[name],
                wall_s=wall,
                machine_busy_cores=machine / wall,
                foreign_busy_cores=0.0,
            )
        # The harness itself and the load generators it started and reaped.
        ours += _self_cpu() - self._self0
        foreign = max(0.0, machine - ours) / wall
        for u in self.usage.values():
            u.foreign_busy_cores = foreign
