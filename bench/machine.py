"""The machine the figures were taken on: CPU, cores, memory, load, software versions."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

from bench.results import Machine
from services.ctl import daemons

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _first_line(argv: list[str], pattern: str = "") -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (proc.stdout or proc.stderr).strip()
    if pattern:
        m = re.search(pattern, text)
        return m.group(1) if m else (text.splitlines()[0] if text else "?")
    return text.splitlines()[0] if text else "?"


def versions() -> dict[str, str]:
    found = {
        "postfix": _first_line(["/usr/sbin/postconf", "-dh", "mail_version"]),
        "dovecot": _first_line(["/usr/sbin/dovecot", "--version"], r"^(\S+)"),
        "spamd": _first_line(["/usr/sbin/spamd", "--version"], r"version (\S+)"),
        "clamd": _first_line(["/usr/sbin/clamd", "--version"], r"ClamAV (\S+)"),
    }
    try:
        found["nats-server"] = _first_line(
            [daemons.nats_server_binary(), "--version"], r"v?(\d+\.\d+\.\d+)"
        )
    except FileNotFoundError:
        found["nats-server"] = "not installed"
    return found


def git_commit() -> str:
    out = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out + ("+dirty" if dirty else "")


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def describe() -> Machine:
    return Machine(
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 1,
        memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        kernel=platform.release(),
        python=platform.python_version(),
        load_start=load_average(),
        versions=versions(),
        commit=git_commit(),
        started_at=now(),
    )
