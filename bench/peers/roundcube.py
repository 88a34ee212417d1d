"""Debian's Roundcube (roundcube-core + roundcube-sqlite3) served by PHP's built-in server,
with a private configuration, database, temp and log directories: nothing under /etc or
/var/lib is touched (ROUNDCUBE_CONFIG_DIR points Roundcube at our own config)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.peers.mailuser import PeerSetupError
from bench.procs import die_with_parent
from services.ctl.daemons import wait_for_port

HOST = "127.0.0.1"
INSTALL = Path("/usr/share/roundcube")
DEBIAN_CONFIG = Path("/etc/roundcube")


@dataclass
class Roundcube:
    root: Path
    imap_port: int
    port: int
    workers: int = 2  # PHP_CLI_SERVER_WORKERS: one per core of the benchmark machine
    proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        if shutil.which("php") is None:
            return "php is not installed (apt install php-cli)"
        if (
            not (INSTALL / "index.php").exists()
            or not (DEBIAN_CONFIG / "defaults.inc.php").exists()
        ):
            return "Roundcube is not installed (apt install roundcube-core roundcube-sqlite3)"
        return None

    def write(self) -> None:
        conf, temp, logs = self.root / "config", self.root / "temp", self.root / "logs"
        for d in (conf, temp, logs):
            d.mkdir(parents=True, exist_ok=True)
        for name in ("defaults.inc.php", "mimetypes.php"):
            shutil.copy(DEBIAN_CONFIG / name, conf / name)
        db = self.root / "roundcube.db"
        if not db.exists():
            with sqlite3.connect(db) as c:
                c.executescript((INSTALL / "SQL" / "sqlite.initial.sql").read_text())
        (conf / "config.inc.php").write_text(
            "<?php\n$config = [];\n"
            f"$config['db_dsnw'] = 'sqlite:///{db}?mode=0600';\n"
            f"$config['imap_host'] = '{HOST}:{self.imap_port}';\n"
            "$config['smtp_host'] = '';\n"
            "$config['des_key'] = 'postern-bench-w7-des-key';\n"
            "$config['plugins'] = [];\n"
            "$config['skin'] = 'elastic';\n"
            f"$config['temp_dir'] = '{temp}/';\n"
            f"$config['log_dir'] = '{logs}/';\n"
            "$config['mail_pagesize'] = 50;\n"
            "$config['enable_spellcheck'] = false;\n"
            "$config['ip_check'] = false;\n"
            "$config['session_lifetime'] = 60;\n"
            "$config['enable_installer'] = false;\n"
        )

    def start(self, timeout: float = 20.0) -> None:
        why = self.available()
        if why is not None:
            raise PeerSetupError(why)
        self.write()
        env = {
            **os.environ,
            "ROUNDCUBE_CONFIG_DIR": str(self.root / "config"),
            "PHP_CLI_SERVER_WORKERS": str(self.workers),
        }
        log = open(self.root / "php.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["php", "-S", f"{HOST}:{self.port}", "-t", str(INSTALL)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=INSTALL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        proc = self.proc
        if not wait_for_port(HOST, self.port, timeout, lambda: proc.poll() is None):
            self.stop()
            raise PeerSetupError(f"php -S did not start: {self.log_tail()}")

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "php.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
