"""``mailctl probe`` failing loudly without any daemon: nothing listens on the SMTP port,
no probe account; and its endpoint syntax. (The round trip on a live pair, and a store
down, are in test_up_mirror.py.)"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from services.ctl import daemons
from services.ctl.probe import Endpoint, parse_endpoint, probe


def test_endpoint_syntax() -> None:
    assert parse_endpoint("mx.example.org:25") == Endpoint("mx.example.org", 25)
    assert str(Endpoint("127.0.0.1", 3143, "store-b")) == "127.0.0.1:3143 (store-b)"
    with pytest.raises(click.BadParameter):
        parse_endpoint("no-port")


def test_smtp_down_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTERN_PROBE_USER", "probe@example.org")
    monkeypatch.setenv("POSTERN_PROBE_PASSWORD", "secret")
    port = daemons.free_port()  # nothing listens there
    result = CliRunner().invoke(probe, ["--smtp", f"127.0.0.1:{port}", "--imap", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert f"PROBE FAILED: smtp 127.0.0.1:{port}: ConnectionRefusedError" in result.output


def test_no_account_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POSTERN_PROBE_USER", raising=False)
    monkeypatch.setenv("POSTERN_DATA", str(tmp_path))  # no demo login there
    result = CliRunner().invoke(probe, [])
    assert result.exit_code == 1
    assert "PROBE FAILED: no probe account" in result.output
