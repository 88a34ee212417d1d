"""``mailctl up`` end to end: every service healthy, a killed child comes back, Ctrl-C
stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.ctl import daemons

PORT_VARS = [
    "POSTERN_NATS_PORT",
    "POSTERN_SMTP_PORT",
    "POSTERN_SUBMISSION_PORT",
    "POSTERN_SUBMISSIONS_PORT",
    "POSTERN_IMAP_PORT",
    "POSTERN_IMAPS_PORT",
    "POSTERN_POP3_PORT",
    "POSTERN_POP3S_PORT",
    "POSTERN_HTTP_PORT",
    "POSTERN_LOCAL_SPAMD_PORT",
    "POSTERN_LOCAL_CLAMD_PORT",
]


class Up:
    """A running ``mailctl up`` whose output is collected line by line."""

    def __init__(self, data: Path, env: dict[str, str], *args: str) -> None:
        self.data = data
        self.env = env
        self.lines: list[str] = []
        mailctl = Path(sys.executable).parent / "mailctl"
        self.proc = subprocess.Popen(
            [str(mailctl), "up", "--data", str(data), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not seen; output:\n" + "\n".join(self.lines))

    def pid(self, child: str) -> int:
        return int((self.data / "run" / f"{child}.pid").read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _health(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return dict(json.loads(r.read()))
    except OSError:
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of the killed process is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _env(scanners: bool) -> tuple[dict[str, str], dict[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
    for var in PORT_VARS:
        env[var] = str(daemons.free_port())
    ops = {name: daemons.free_port() for name in ("filter", "store", "webmail", "relay")}
    # each service reads POSTERN_OPS_PORT; mailctl passes one per child (see below)
    env["POSTERN_NATS_MONITOR_PORT"] = "0"
    env["POSTERN_SCANNERS"] = "true" if scanners else "false"
    env["POSTERN_FILTER_OPS_PORT"] = str(ops["filter"])
    env["POSTERN_STORE_OPS_PORT"] = str(ops["store"])
    env["POSTERN_WEBMAIL_OPS_PORT"] = str(ops["webmail"])
    env["POSTERN_RELAY_OPS_PORT"] = str(ops["relay"])
    return env, ops


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Up, dict[str, int]]]:
    env, ops = _env(scanners=False)
    up = Up(tmp_path / "var", env)
    try:
        yield up, ops
    finally:
        up.stop()


def test_up_healthy_restarts_and_stops(cluster: tuple[Up, dict[str, int]]) -> None:
    up, ops = cluster
    up.wait_for("Postern is up.", timeout=60)
    assert any(line.startswith("Demo login: demo@postern.test") for line in up.lines)
    assert any("scanners switched off" in line for line in up.lines)
    for name, port in ops.items():
        assert _health(port).get("status") == "ok", name
    pids = {name: up.pid(name) for name in ("nats", "store", "filter", "webmail", "relay")}

    # a child that dies is reported and comes back
    os.kill(pids["store"], signal.SIGKILL)
    up.wait_for("store (pid", timeout=20)
    up.wait_for("store restarted", timeout=20)
    deadline = time.monotonic() + 30
    while _health(ops["store"]).get("status") != "ok" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _health(ops["store"]).get("status") == "ok"
    new_store = up.pid("store")
    assert new_store != pids["store"]

    # Ctrl-C stops every child
    assert up.stop() == 0
    for pid in [*pids.values(), new_store]:
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)


def test_second_run_prints_the_same_demo_login(tmp_path: Path) -> None:
    env, _ = _env(scanners=False)
    first = Up(tmp_path / "var", env)
    first.wait_for("Postern is up.", timeout=60)
    login = next(line for line in first.lines if line.startswith("Demo login"))
    first.stop()
    second = Up(tmp_path / "var", env)
    try:
        second.wait_for("Postern is up.", timeout=60)
        assert login in second.lines
        # one mailctl up per data directory
        third = Up(tmp_path / "var", env)
        assert third.proc.wait(30) == 1
        assert any("another mailctl up is running" in line for line in third.lines)
    finally:
        second.stop()


def test_up_with_scanners(tmp_path: Path) -> None:
    if daemons.spamd_binary() is None or daemons.clamd_binary() is None:
        from tests.support.daemons import missing

        missing("spamd and clamd")
    env, _ = _env(scanners=True)
    up = Up(tmp_path / "var", env)
    try:
        up.wait_for("Postern is up.", timeout=60)
        for name, var in (
            ("spamd", "POSTERN_LOCAL_SPAMD_PORT"),
            ("clamd", "POSTERN_LOCAL_CLAMD_PORT"),
        ):
            assert up.pid(name) > 0
            assert daemons.wait_for_port("127.0.0.1", int(env[var]), 60), name
        if daemons.system_clamav_db() is None:
            assert any("EICAR test signature ONLY" in line for line in up.lines)
    finally:
        assert up.stop() == 0


def _accepted(ops_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.findall(r"^postern_smtp_accepted_total\{[^}]*\} ([0-9.]+)$", text, re.M)
    return sum(float(v) for v in found)


def test_up_with_several_filters_behind_the_balancer(tmp_path: Path) -> None:
    env, _ = _env(scanners=False)
    up = Up(tmp_path / "var", env, "--filters", "2")
    try:
        up.wait_for("2 filter processes behind a local balancer", timeout=90)
        line = next(x for x in up.lines if "behind a local balancer" in x)
        filter_ops = [int(p) for p in re.findall(r"filter-\d :(\d+)", line)]
        assert len(filter_ops) == 2
        for i in range(10):
            with smtplib.SMTP("127.0.0.1", int(env["POSTERN_SMTP_PORT"]), timeout=30) as s:
                s.sendmail(
                    "bob@ext.test",
                    ["demo@postern.test"],
                    f"Subject: balanced {i}\r\nFrom: bob@ext.test\r\n\r\nhi\r\n".encode(),
                )
        shares = [_accepted(p) for p in filter_ops]
        assert shares == [5.0, 5.0]  # round robin over the two filter processes
    finally:
        assert up.stop() == 0
