"""Private spamd and clamd for W2, started the way ``mailctl up`` and the tests start them
(``services.ctl.daemons``): spamd with local rules only, clamd with the machine's
signature database or, when freshclam never ran, the EICAR test signature alone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.peers.mailuser import PeerSetupError
from bench.procs import die_with_parent
from services.ctl import daemons

HOST = "127.0.0.1"
SPAMD_CHILDREN = 4  # as mailctl up and the test fixtures run it


@dataclass
class ScannerDaemons:
    root: Path
    spamd_port: int = field(default_factory=daemons.free_port)
    clamd_port: int = field(default_factory=daemons.free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    clamav_db: str = ""

    @staticmethod
    def available() -> str | None:
        if daemons.spamd_binary() is None:
            return "spamd is not installed (apt-get install spamd)"
        if daemons.clamd_binary() is None:
            return "clamd is not installed (apt-get install clamav-daemon)"
        return None

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def start(self, timeout: float = 180.0) -> None:
        why = self.available()
        if why is not None:
            raise PeerSetupError(why)
        self.root.mkdir(parents=True, exist_ok=True)
        spamd = daemons.spamd_binary()
        clamd = daemons.clamd_binary()
        assert spamd is not None and clamd is not None
        self._spawn(
            "spamd",
            daemons.spamd_command(
                spamd, HOST, self.spamd_port, self.root / "spamd.pid", SPAMD_CHILDREN
            ),
        )
        db = daemons.system_clamav_db()
        if db is None:
            db = daemons.write_eicar_db(self.root / "clamav-db")
            self.clamav_db = "EICAR test signature only (no ClamAV database on this machine)"
        else:
            self.clamav_db = f"the machine's ClamAV database ({db})"
        conf = daemons.write_clamd_config(
            self.root / "clamd.conf",
            db_dir=db,
            host=HOST,
            port=self.clamd_port,
            log_file=self.root / "clamd.log",
        )
        self._spawn("clamd", daemons.clamd_command(clamd, conf))
        for name, port in (("spamd", self.spamd_port), ("clamd", self.clamd_port)):
            proc = self.procs[name]
            if not daemons.wait_for_port(HOST, port, timeout, lambda p=proc: p.poll() is None):
                self.stop()
                raise PeerSetupError(f"{name} did not start (log in {self.root})")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            # spamd's children can outlive their parent for a moment: end the whole group
            # (each daemon was started in a session of its own).
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
