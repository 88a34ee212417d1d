"""Postfix's ``smtp-sink`` as the 'remote MX' of W8: it accepts every message and dumps
each transaction to a file of its own (``-d <dir>/``), whose modification time is the
moment the message arrived. Both sides relay to the same sink.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.peers.mailuser import PeerSetupError
from services.ctl.daemons import free_port, wait_for_port

SMTP_SINK = "/usr/sbin/smtp-sink"
_ID = re.compile(rb"^X-Bench-Id: (\S+)\r?$", re.MULTILINE)


def sink_binary() -> str | None:
    return shutil.which("smtp-sink") or (SMTP_SINK if os.path.exists(SMTP_SINK) else None)


@dataclass(frozen=True, slots=True)
class Arrival:
    bench_id: str
    at: float  # the dump file's modification time (Unix seconds)


@dataclass
class SmtpSink:
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def dump_dir(self) -> Path:
        return self.root / "dump"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, backlog: int = 256) -> None:
        binary = sink_binary()
        if binary is None:
            raise PeerSetupError("smtp-sink is not installed (apt-get install postfix)")
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.dump_dir, 0o1777)  # smtp-sink drops to 'nobody' when run as root
        argv = [binary, "-d", f"{self.dump_dir}/", f"127.0.0.1:{self.port}", str(backlog)]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "nobody"]
        with open(self.root / "sink.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        if not wait_for_port("127.0.0.1", self.port, 15, lambda: self.proc.poll() is None):
            raise PeerSetupError(f"smtp-sink did not listen on {self.port}")

    def clear(self) -> None:
        for path in self.dump_dir.iterdir():
            path.unlink(missing_ok=True)

    def count(self) -> int:
        return sum(1 for _ in os.scandir(self.dump_dir))

    def arrivals(self) -> list[Arrival]:
        out = []
        for entry in os.scandir(self.dump_dir):
            with open(entry.path, "rb") as fh:
                head = fh.read(4096)
            m = _ID.search(head)
            if m is not None:
                out.append(Arrival(m.group(1).decode(), entry.stat().st_mtime_ns / 1e9))
        return out

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
