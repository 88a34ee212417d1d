"""``mailctl up`` with NATS users per service (the default) and with TLS to NATS
(POSTERN_NATS_TLS): every service still does its work end to end under its own limited
user, nats-server logs no permissions violation, mailctl's own commands still work, and
the server's configuration holds hashes, never passwords (issue 18, NATS security)."""

from __future__ import annotations

import imaplib
import json
import re
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from services.ctl import daemons
from tests.services.ctl.test_up import Up, _env
from tests.support.securenats import plain_session

MAILCTL = str(Path(sys.executable).parent / "mailctl")


class Sink:
    """A remote MX on loopback for the relay's pass."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.got = threading.Event()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(bytes(getattr(envelope, "original_content", b"") or b""))
        self.got.set()
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = daemons.free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def _imap_count(port: int, user: str, password: str, needle: bytes) -> int:
    with imaplib.IMAP4("127.0.0.1", port) as imap:
        imap.login(user, password)
        imap.select("INBOX")
        typ, data = imap.search(None, "BODY", needle.decode())
        assert typ == "OK"
        return len(data[0].split())


def _wait_for_mail(port: int, user: str, password: str, needle: bytes) -> int:
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline:
        count = _imap_count(port, user, password, needle)
        if count:
            break
        time.sleep(0.3)
    return count


def _demo(up: Up) -> tuple[str, str]:
    return "demo@postern.test", (up.data / "demo-login.txt").read_text().strip()


def _violations(up: Up) -> list[str]:
    log = (up.data / "logs" / "nats.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "Violation" in line]


def _webmail_login(port: int, user: str, password: str) -> tuple[int, str]:
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as web:
        form = web.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        posted = web.post(
            "/login",
            data={"user": user, "password": password, "csrf": token.group(1), "next": "/"},
            headers={"Origin": base},
        )
        assert posted.status_code == 303, posted.text[-500:]
        inbox = web.get("/", follow_redirects=True)
        return inbox.status_code, inbox.url.path


def test_every_service_works_under_its_own_nats_user(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    remote, sink_port = sink
    env, _ = _env(scanners=False)
    env["POSTERN_RELAY_ROUTES"] = json.dumps({"remote.test": f"127.0.0.1:{sink_port}"})
    up = Up(tmp_path / "var", env)
    try:
        up.wait_for("Postern is up.", timeout=90)
        assert any("a user per service" in line for line in up.lines)
        user, password = _demo(up)

        # filter → MAIL_INBOUND → store, each as its own user
        with smtplib.SMTP("127.0.0.1", int(env["POSTERN_SMTP_PORT"]), timeout=30) as s:
            s.sendmail(
                "bob@ext.test",
                [user],
                b"Subject: secured\r\nFrom: bob@ext.test\r\n\r\nnats-user-inbound\r\n",
            )
        assert _wait_for_mail(int(env["POSTERN_IMAP_PORT"]), user, password, b"nats-user-inbound")

        # submission (SMTP AUTH) → MAIL_OUTBOUND → relay → the remote MX
        with smtplib.SMTP("127.0.0.1", int(env["POSTERN_SUBMISSION_PORT"]), timeout=30) as s:
            s.login(user, password)
            s.sendmail(
                user,
                ["carol@remote.test"],
                f"Subject: out\r\nFrom: {user}\r\n\r\nnats-user-outbound\r\n".encode(),
            )
        assert remote.got.wait(60)
        assert b"nats-user-outbound" in remote.messages[0]

        # webmail: login (SESSIONS, AUTH_FAILURES, IMAP to the store), then the inbox
        status, path = _webmail_login(int(env["POSTERN_HTTP_PORT"]), user, password)
        assert status == 200
        assert not path.startswith("/login")

        # mailctl's own commands find the administrator's password in the data directory
        def mailctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(Path(sys.executable).parent / "mailctl"), *args],
                input=stdin,
                env=env | {"POSTERN_DATA": str(up.data)},
                capture_output=True,
                text=True,
                timeout=60,
            )

        added = mailctl(
            "user", "add", "eve@postern.test", "--password-stdin", stdin="eve-secret-1\n"
        )
        assert added.returncode == 0, added.stderr
        # --purge: mailctl removes the user, the store (which may not write the directory)
        # erases the mail once its directory view has lost the user
        assert _wait_for_mail(int(env["POSTERN_IMAP_PORT"]), user, password, b"nats-user-inbound")
        mail = Path(mailctl("path", user).stdout.strip())
        assert mail.is_dir(), mail
        purged = mailctl("user", "remove", user, "--purge")
        assert purged.returncode == 0, purged.stderr
        assert "mail erased" in purged.stdout
        assert not mail.exists()

        assert _violations(up) == []
        conf = (up.data / "nats" / "nats.conf").read_text()
        assert conf.count('password: "$2b$') == 6
        for name in ("filter", "store", "relay", "webmail", "mirror", "mailctl"):
            secret = (up.data / "nats" / "users" / name).read_text().strip()
            assert secret not in conf
            assert (up.data / "nats" / "users" / name).stat().st_mode & 0o077 == 0
        assert up.pid("nats") > 0
    finally:
        assert up.stop() == 0


def test_up_with_tls_to_nats(tmp_path: Path) -> None:
    env, _ = _env(scanners=False)
    env["POSTERN_NATS_TLS"] = "true"
    up = Up(tmp_path / "var", env)
    try:
        up.wait_for("Postern is up.", timeout=90)
        assert any("TLS only" in line for line in up.lines)
        user, password = _demo(up)
        with smtplib.SMTP("127.0.0.1", int(env["POSTERN_SMTP_PORT"]), timeout=30) as s:
            s.sendmail(
                "bob@ext.test", [user], b"Subject: tls\r\nFrom: bob@ext.test\r\n\r\nover-tls\r\n"
            )
        assert _wait_for_mail(int(env["POSTERN_IMAP_PORT"]), user, password, b"over-tls")
        info, answer = plain_session("127.0.0.1", int(env["POSTERN_NATS_PORT"]))
        assert info["tls_required"] is True
        assert b"PONG" not in answer
        status = subprocess.run(
            [MAILCTL, "domain", "list"],
            env=env | {"POSTERN_DATA": str(up.data)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert "postern.test" in status.stdout
        assert _violations(up) == []
    finally:
        assert up.stop() == 0
