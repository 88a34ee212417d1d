"""Running a program to completion with its resource use, and daemon hygiene.

No psutil here (see :mod:`bench.meter`), so the harness's pure parts and their tests run
without the bench extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class Finished:
    """A program run to completion by :func:`run_metered`."""

    returncode: int
    stdout: str
    stderr: str
    cpu_s: float  # the program and every descendant it reaped
    max_rss: int  # bytes, of its largest process
    wall_s: float


def run_metered(
    argv: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Finished:
    """Run ``argv`` to completion and return its output and the resources it used.

    ``os.wait4`` gives the CPU of the program and of the descendants it reaped, which a
    sampler cannot see once they are gone. After ``timeout`` the program is killed.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            if on_start is not None:
                on_start(proc.pid)
            deadline = t0 + timeout
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    _pid, status, ru = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
        except BaseException:  # Ctrl-C: never leave a load generator running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
            raise
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Finished(
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            cpu_s=float(ru.ru_utime + ru.ru_stime),
            max_rss=int(ru.ru_maxrss) * 1024,
            wall_s=wall,
        )


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for daemons: SIGTERM them if the harness dies (Linux prctl), so a
    killed benchmark leaves nothing running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_all(procs: Iterable[subprocess.Popen[bytes] | None], wait: float = 10) -> None:
    """TERM each process still running, KILL it if it has not stopped after ``wait`` s."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
            if proc.poll() is None:
                proc.kill()
