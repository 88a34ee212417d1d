"""Where Postern's time goes: ``--profile`` samples its Python processes with py-spy.

py-spy attaches from outside (ptrace, ``--nonblocking``: the process is never paused),
samples every thread (the store runs SQLite and file I/O in worker threads, which a
profiler inside the process would miss) and skips idle threads, so its samples are where
CPU goes. Each profiled process leaves a folded-stack file (``*.folded``: load it in
speedscope or flamegraph.pl) and the report lists the functions with the most samples.
Only the first run of Postern's side is profiled: sampling costs a little CPU, and the
report says which runs were profiled.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RATE = 200  # samples per second


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else found


def python_processes(roots: list[int]) -> list[tuple[int, str]]:
    """(pid, label) of every Python process in the trees: label is the ``-m`` module."""
    import psutil  # type: ignore[import-untyped]

    from bench.meter import tree

    out = []
    for p in tree(roots):
        with contextlib.suppress(psutil.Error):
            cmd = p.cmdline()
            if not cmd or "python" not in Path(cmd[0]).name:
                continue
            label = cmd[cmd.index("-m") + 1] if "-m" in cmd[:-1] else Path(cmd[-1]).name
            out.append((p.pid, label.rsplit(".", 1)[-1]))
    return out


@dataclass
class Profiler:
    outdir: Path
    prefix: str
    procs: list[tuple[subprocess.Popen[bytes], Path, str]] = field(default_factory=list)

    def attach(self, pid: int, label: str) -> None:
        binary = py_spy()
        if binary is None:
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        out = self.outdir / f"{self.prefix}-{label}.folded"
        argv = [binary, "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking"]
        argv += ["--format", "raw", "--output", str(out)]
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        self.procs.append((proc, out, label))

    def stop(self) -> dict[str, list[str]]:
        """Stop sampling; return a summary per profiled process."""
        for proc, _, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        summaries: dict[str, list[str]] = {}
        for proc, out, label in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if out.exists():
                summaries[f"{self.prefix} {label}"] = summarize(out.read_text())
        self.procs = []
        return summaries


def summarize(folded: str, top: int = 12) -> list[str]:
    """The functions that were on CPU most (own samples), and the project's functions with
    the most samples including what they call, from py-spy's folded stacks
    (``frame;frame;frame count`` lines, outermost first)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        total += n
        frames = stack.split(";")
        own[_short(frames[-1])] += n
        for frame in set(frames):
            if "mailcore/" in frame or "services/" in frame:
                inclusive[_short(frame)] += n
    if not total:
        return ["no samples (the process was idle or py-spy could not attach)"]
    lines = [f"{total} samples at {RATE}/s ≈ {total / RATE:.1f} busy thread-seconds; own time:"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("project functions, time including callees:")
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return lines


def _short(frame: str) -> str:
    """``fetch (services/store/imap/handlers/fetch.py:45)`` without the line number."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({path})" if path else name
