"""The operator's first hour: one resolution of settings for `mailctl up` and every other
`mailctl` command, defaults that never override the operator, a useful host name, spamd
with a home, an EICAR body signature (issue 17)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailcore import config
from mailcore.config import ClusterSettings, default_hostname, hostname_warning
from services.cli import main
from services.ctl import daemons, up
from tests.support.daemons import NatsServer


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("POSTERN_") and name not in ("POSTERN_LOG_FORMAT",):
            monkeypatch.delenv(name)


def test_nats_url_follows_the_port_and_the_port_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClusterSettings().nats_url == "nats://127.0.0.1:4222"
    monkeypatch.setenv("POSTERN_NATS_PORT", "5222")
    assert ClusterSettings().nats_url == "nats://127.0.0.1:5222"
    monkeypatch.delenv("POSTERN_NATS_PORT")
    monkeypatch.setenv("POSTERN_NATS_URL", "nats://127.0.0.1:6222")
    assert ClusterSettings().nats_port == 6222
    monkeypatch.setenv("POSTERN_NATS_PORT", "5222")
    with pytest.raises(ValueError, match="disagree"):
        ClusterSettings()


def test_mailctl_edits_the_cluster_mailctl_up_would_start(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the environment that started a cluster on another port: only POSTERN_NATS_PORT
    monkeypatch.setenv("POSTERN_NATS_PORT", str(nats_server.port))
    runner = CliRunner()
    added = runner.invoke(main, ["domain", "add", "resolution.test"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(main, ["domain", "list"])
    assert "resolution.test" in listed.output
    cluster = up.load_cluster(None)
    assert cluster.nats_url == f"nats://127.0.0.1:{nats_server.port}"


def test_up_refuses_a_remote_nats_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSTERN_NATS_URL", "nats://nats.example.org:4222")
    cluster = up.load_cluster(tmp_path)
    with pytest.raises(up.UpError, match="not this machine"):
        up._check_nats_url(cluster)


def test_up_only_defaults_plaintext_auth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert up._child_defaults(up.load_cluster(tmp_path)) == {
        "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback"
    }
    monkeypatch.setenv("POSTERN_ALLOW_PLAINTEXT_AUTH", "never")
    assert up._child_defaults(up.load_cluster(tmp_path)) == {}


def test_hostname_falls_back_to_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.socket, "getfqdn", lambda: "localhost")
    monkeypatch.setattr(config.socket, "gethostname", lambda: "mailbox")
    assert default_hostname() == "mailbox"
    assert ClusterSettings().hostname == "mailbox"
    warning = hostname_warning("mailbox")
    assert warning is not None and "POSTERN_HOSTNAME" in warning
    assert hostname_warning("localhost.localdomain") is not None
    monkeypatch.setattr(config.socket, "getfqdn", lambda: "mx1.example.org")
    assert default_hostname() == "mx1.example.org"
    assert hostname_warning("mx1.example.org") is None


def test_spamd_gets_a_writable_home(tmp_path: Path) -> None:
    home = daemons.spamd_home(tmp_path / "spamd" / "home")
    argv = daemons.spamd_command("/usr/sbin/spamd", "127.0.0.1", 1, tmp_path / "p", home=home)
    assert f"--helper-home-dir={home}" in argv
    assert "--allow-tell" not in argv  # TELL only where asked for (mailctl up: the webmail)
    told = daemons.spamd_command("/usr/sbin/spamd", "127.0.0.1", 1, tmp_path / "p", allow_tell=True)
    assert "--allow-tell" in told
    owner = (home / ".spamassassin").stat().st_uid
    runs_as = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert owner == runs_as


def test_eicar_db_has_the_body_signature(tmp_path: Path) -> None:
    db = daemons.write_eicar_db(tmp_path)
    shipped = Path(__file__).parents[2] / "data" / "clamav" / "eicar.ndb"
    assert (db / "eicar.ndb").read_text() == shipped.read_text() == daemons.EICAR_NDB_LINE
