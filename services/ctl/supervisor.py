"""Runs child processes, reports any that die and restarts them with back-off.

Children get their own session (a Ctrl-C in the terminal reaches only ``mailctl``, which
then stops them in order) and die with ``mailctl`` even if it is killed outright
(``PR_SET_PDEATHSIG``). Each child's output goes to ``<data>/logs/<name>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailcore import metrics

_PR_SET_PDEATHSIG = 1
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # a child up this long gets its back-off reset


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM

    @property
    def pid_path(self) -> Path:
        """``<logs>/../run/<name>.pid``: where operators (and tests) find the child."""
        return self.log_path.parent.parent / "run" / f"{self.name}.pid"


@dataclass
class _Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    task: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self._echo = echo
        self._children: dict[str, _Child] = {}
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def pid(self, name: str) -> int | None:
        child = self._children.get(name)
        if child is None or child.process is None or child.process.returncode is not None:
            return None
        return child.process.pid

    def restarts(self, name: str) -> int:
        return self._children[name].restarts

    def alive(self, name: str) -> bool:
        return self.pid(name) is not None

    async def start(self, spec: ChildSpec) -> None:
        """Start ``spec`` now and keep it running until :meth:`stop_all`."""
        child = _Child(spec=spec)
        self._children[spec.name] = child
        await self._spawn(child)
        child.task = asyncio.create_task(self._watch(child), name=f"watch-{spec.name}")

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as log:  # noqa: ASYNC230 - a local append, once
            child.process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **spec.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child.started_at = time.monotonic()
        spec.pid_path.parent.mkdir(parents=True, exist_ok=True)
        spec.pid_path.write_text(f"{child.process.pid}\n")

    async def _watch(self, child: _Child) -> None:
        backoff = 0.5
        while True:
            assert child.process is not None
            status = await child.process.wait()
            if self._stopping:
                return
            uptime = time.monotonic() - child.started_at
            if uptime > STABLE_AFTER:
                backoff = 0.5
            child.restarts += 1
            metrics.CHILD_RESTARTS.labels(child.spec.name).inc()
            self._echo(
                f"!! {child.spec.name} (pid {child.process.pid}) exited with "
                f"{_describe(status)} after {uptime:.1f}s; restarting in {backoff:.1f}s "
                f"(restart {child.restarts}, log {child.spec.log_path})"
            )
            await asyncio.sleep(backoff)
            if self.stopping:
                return
            backoff = min(backoff * 2, MAX_BACKOFF)
            try:
                await self._spawn(child)
            except OSError as exc:
                self._echo(f"!! {child.spec.name} could not be restarted: {exc}")
                continue
            self._echo(f"   {child.spec.name} restarted (pid {child.process.pid})")

    async def stop_all(self, timeout: float = 10.0) -> None:
        """Stop children in reverse start order: SIGTERM, then SIGKILL after ``timeout``."""
        self._stopping = True
        for child in reversed(list(self._children.values())):
            await self._stop(child, timeout)
            if child.task is not None:
                child.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.task

    async def _stop(self, child: _Child, timeout: float) -> None:
        proc = child.process
        with contextlib.suppress(OSError):
            child.spec.pid_path.unlink()
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(child.spec.stop_signal)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            self._echo(f"!! {child.spec.name} did not stop in {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"
