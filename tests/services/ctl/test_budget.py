"""Disk budgets of ``mailctl up`` (issue 19 #2): sized from the free space with a floor and a
warning, explicit settings kept, and on a disk too small one clear line — never a traceback.
The end-to-end cases run ``mailctl up`` with its data directory on a small tmpfs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore.config import StoreSettings
from services.ctl.budget import JETSTREAM_FLOOR, STREAM_FLOOR, BudgetError, plan
from tests.services.ctl.test_up import Up, _env, _health
from tests.support.daemons import NatsServer
from tests.support.smallfs import small_fs

MiB, GiB = 1024**2, 1024**3


def test_plenty_of_disk_keeps_the_default_budgets() -> None:
    s = StoreSettings(data=Path("x"))
    b = plan(s, free=100 * GiB)
    assert b.warning is None
    assert b.streams["inbound_max_bytes"] == s.inbound_max_bytes
    assert sum(b.streams.values()) <= b.jetstream <= 50 * GiB


def test_little_disk_scales_the_budgets_down_with_a_warning() -> None:
    s = StoreSettings(data=Path("x"))
    b = plan(s, free=2 * GiB)
    assert b.jetstream == GiB  # half the free space: the rest is the reserve
    assert sum(b.streams.values()) <= b.jetstream
    assert all(v >= STREAM_FLOOR for v in b.streams.values())
    assert b.warning is not None and "POSTERN_INBOUND_MAX_BYTES" in b.warning


def test_an_explicit_budget_is_kept() -> None:
    s = StoreSettings(data=Path("x"), inbound_max_bytes=300 * MiB)
    b = plan(s, free=2 * GiB)
    assert b.streams["inbound_max_bytes"] == 300 * MiB
    with pytest.raises(BudgetError, match="POSTERN_INBOUND_MAX_BYTES"):
        plan(StoreSettings(data=Path("x"), inbound_max_bytes=4 * GiB), free=2 * GiB)


def test_below_the_floor_is_one_clear_error() -> None:
    with pytest.raises(BudgetError, match="free some space or set POSTERN_DATA"):
        plan(StoreSettings(data=Path("x")), free=JETSTREAM_FLOOR)


def test_up_starts_on_a_small_disk_with_a_warning(tmp_path: Path) -> None:
    with small_fs(tmp_path / "small", 1 * GiB) as fs:
        env, ops = _env(scanners=False)
        up = Up(fs.path / "var", env)
        try:
            up.wait_for("Postern is up.", timeout=90)
            assert any("stream budgets scaled down" in line for line in up.lines)
            for name, port in ops.items():
                assert _health(port).get("status") == "ok", name
            conf = (fs.path / "var" / "nats" / "nats.conf").read_text()
            assert "max_file_store:" in conf
        finally:
            assert up.stop() == 0


def test_up_on_a_disk_too_small_says_so_in_one_line(tmp_path: Path) -> None:
    with small_fs(tmp_path / "tiny", 200 * MiB) as fs:
        env, _ = _env(scanners=False)
        up = Up(fs.path / "var", env)
        try:
            assert up.proc.wait(60) == 1
        finally:
            up.stop()
        up._reader.join(10)
        assert not any("Traceback" in line for line in up.lines), up.lines
        assert up.lines == [
            next(line for line in up.lines if line.startswith("mailctl up: only "))
        ], up.lines


def test_explicit_budgets_that_do_not_fit_are_one_line(tmp_path: Path) -> None:
    with small_fs(tmp_path / "small", 1 * GiB) as fs:
        env, _ = _env(scanners=False)
        env["POSTERN_JETSTREAM_MAX_BYTES"] = str(512 * MiB)
        env["POSTERN_INBOUND_MAX_BYTES"] = str(1 * GiB)
        up = Up(fs.path / "var", env)
        try:
            assert up.proc.wait(60) == 1
        finally:
            up.stop()
        up._reader.join(10)
        assert len(up.lines) == 1, up.lines
        assert up.lines[0].startswith("mailctl up: the stream budgets add up to 1.")
        assert "lower POSTERN_INBOUND_MAX_BYTES" in up.lines[0]


def test_a_service_refused_by_nats_for_storage_says_so_in_one_line(tmp_path: Path) -> None:
    """A service on a NATS whose disk cannot hold the budgets (error 10047) exits with one
    line naming the settings, not a traceback."""
    with small_fs(tmp_path / "nats", 128 * MiB) as fs:
        nats = NatsServer(fs.path)
        nats.start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
            env |= {
                "POSTERN_DATA": str(tmp_path / "data"),
                "POSTERN_NATS_URL": nats.url,
                "POSTERN_OPS_PORT": "0",
                "POSTERN_LOG_FORMAT": "console",
            }
            for port in ("IMAP", "IMAPS", "POP3", "POP3S"):
                env[f"POSTERN_{port}_PORT"] = "0"
            done = subprocess.run(
                [sys.executable, "-m", "services.store"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            nats.stop()
        out = done.stdout + done.stderr
        assert done.returncode == 2, out
        assert "Traceback" not in out
        line = next(ln for ln in out.splitlines() if "cannot start" in ln)
        assert "error 10047" in line and "POSTERN_INBOUND_MAX_BYTES" in line
