"""Settings: environment, TOML file, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore.config import FilterSettings, StoreSettings, load_settings


def test_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTERN_IMAP_PORT", "3143")
    monkeypatch.setenv("POSTERN_DATA", "/srv/mail")
    s = StoreSettings()
    assert s.imap_port == 3143
    assert s.data == Path("/srv/mail")
    assert s.pop3_port == 2110
    assert s.cert_path == Path("/srv/mail/tls/cert.pem")


def test_toml_file_with_service_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "postern.toml"
    conf.write_text('log_level = "debug"\nsmtp_port = 2626\n[filter]\nsmtp_port = 2727\n')
    monkeypatch.setenv("POSTERN_CONFIG", str(conf))
    s = FilterSettings()
    assert s.log_level == "debug"
    assert s.smtp_port == 2727  # the service's table wins over the top level
    monkeypatch.setenv("POSTERN_SMTP_PORT", "2828")
    assert FilterSettings().smtp_port == 2828  # environment wins over the file


def test_bad_value_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSTERN_IMAP_PORT", "abc")
    with pytest.raises(SystemExit) as exc:
        load_settings(StoreSettings)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "POSTERN_IMAP_PORT='abc'" in err
    assert "valid integer" in err


def test_port_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTERN_SMTP_PORT", "70000")
    with pytest.raises(SystemExit):
        load_settings(FilterSettings)


def test_unreadable_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    monkeypatch.setenv("POSTERN_CONFIG", str(bad))
    with pytest.raises(SystemExit):
        load_settings(StoreSettings)
    assert "POSTERN_CONFIG" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("service", "var", "value"),
    [
        ("store", "POSTERN_IMAP_PORT", "abc"),
        ("filter", "POSTERN_LOG_LEVEL", "chatty"),
        ("webmail", "POSTERN_HTTP_PORT", "eighty"),
    ],
)
def test_service_refuses_to_start_with_bad_setting(service: str, var: str, value: str) -> None:
    env = {**os.environ, var: value}
    proc = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"postern-{service}: invalid setting {var}=")
