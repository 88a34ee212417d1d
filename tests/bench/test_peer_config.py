"""The private peers' configuration: own paths and ports, loopback only, never /etc."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.peers.dovecot import (
    DOVEADM_PASSWORD,
    DovecotLayout,
    DovecotPorts,
    render_config,
    render_users,
)
from bench.peers.mailuser import MailUser
from bench.peers.postfix import (
    PostfixLayout,
    render_mailboxes,
    render_main_cf,
    render_master_cf,
)

VMAIL = MailUser(name="vmail", uid=999, gid=995, group="vmail")


def settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), v.strip())
    return out


def test_dovecot_config_is_private_and_loopback(tmp_path: Path) -> None:
    layout = DovecotLayout(tmp_path / "dovecot")
    text = render_config(
        layout,
        DovecotPorts(imap=40143, pop3=40110, lmtp=40024),
        VMAIL,
        as_root=True,
        domain="bench.test",
    )
    s = settings(text)
    assert s["base_dir"] == str(layout.base_dir)
    assert s["state_dir"] == str(layout.state_dir)
    assert s["log_path"] == str(layout.log)
    assert s["listen"] == "127.0.0.1"
    assert s["ssl"] == "no" and s["disable_plaintext_auth"] == "no"
    assert s["protocols"] == "imap pop3 lmtp"
    assert s["first_valid_uid"] == "999"
    assert s["default_login_user"] == "dovenull" and s["default_internal_user"] == "dovecot"
    assert "/etc/dovecot" not in text
    for port in ("40143", "40110", "40024"):
        assert f"port = {port}" in text
    assert text.count("port = 0") == 2  # imaps and pop3s off
    assert f"passwd-file\n  args = scheme=PLAIN username_format=%u {layout.users_file}" in text


def test_dovecot_unprivileged_runs_everything_as_the_user(tmp_path: Path) -> None:
    me = MailUser(name="dev", uid=1000, gid=1000, group="devs")
    s = settings(
        render_config(
            DovecotLayout(tmp_path), DovecotPorts(1, 2, 3), me, as_root=False, domain="d.test"
        )
    )
    assert s["default_login_user"] == s["default_internal_user"] == "dev"
    assert s["default_internal_group"] == "devs"


def test_dovecot_users_file(tmp_path: Path) -> None:
    layout = DovecotLayout(tmp_path)
    text = render_users(layout, {"b@bench.test": "pw-b", "a@bench.test": "pw-a"}, VMAIL)
    assert text.splitlines() == [
        f"a@bench.test:{{PLAIN}}pw-a:999:995::{tmp_path / 'mail' / 'a@bench.test'}::",
        f"b@bench.test:{{PLAIN}}pw-b:999:995::{tmp_path / 'mail' / 'b@bench.test'}::",
    ]
    with pytest.raises(ValueError):
        render_users(layout, {"a@bench.test": "x:y"}, VMAIL)


def test_postfix_main_cf_delivers_by_lmtp_to_the_private_dovecot(tmp_path: Path) -> None:
    layout = PostfixLayout(tmp_path / "postfix")
    s = settings(render_main_cf(layout, domain="bench.test", lmtp_port=40024))
    assert s["queue_directory"] == str(layout.queue_dir)
    assert s["data_directory"] == str(layout.data_dir)
    assert s["inet_interfaces"] == "loopback-only"
    assert s["mydestination"] == ""
    assert s["virtual_mailbox_domains"] == "bench.test"
    assert s["virtual_mailbox_maps"] == f"texthash:{layout.mailboxes}"
    assert s["virtual_transport"] == "lmtp:inet:127.0.0.1:40024"
    assert s["smtpd_relay_restrictions"] == "permit_mynetworks, reject_unauth_destination"


def test_postfix_master_cf_listens_on_loopback_only_without_chroot() -> None:
    text = render_master_cf(40025)
    services = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    inet = [s for s in services if s[1] == "inet"]
    assert inet == [["127.0.0.1:40025", "inet", "n", "-", "n", "-", "-", "smtpd"]]
    assert all(s[4] == "n" for s in services)  # chroot column
    names = {s[0] for s in services}
    assert {"cleanup", "qmgr", "lmtp", "rewrite", "bounce", "postlog"} <= names


def test_postfix_mailbox_table() -> None:
    assert render_mailboxes(["b@x.test", "a@x.test"]) == "a@x.test OK\nb@x.test OK\n"


def test_dovecot_doveadm_server_for_w6(tmp_path: Path) -> None:
    def render(port: int | None) -> str:
        layout = DovecotLayout(tmp_path)
        ports = DovecotPorts(1, 2, 3)
        return render_config(layout, ports, VMAIL, as_root=True, domain="d.test", doveadm_port=port)

    assert "doveadm_password" not in render(None)  # every other workload: no doveadm
    client = settings(render(0))
    assert client["doveadm_password"] == DOVEADM_PASSWORD
    assert "service doveadm" not in render(0)  # the syncing side needs no listener
    server = render(40999)
    assert "service doveadm {\n  inet_listener {\n    address = 127.0.0.1\n" in server
    assert "port = 40999" in server
