"""``mailctl`` account commands and status against the session's real nats-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus, connect
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.credentials import Credentials
from mailcore.directory import Directory
from mailcore.mailstore import store_root
from mailcore.mailstore.layout import account_dir
from services.cli import main
from services.ctl import daemons
from tests.support.daemons import NatsServer

ROOT = Path(__file__).resolve().parents[3]


def mailctl(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--nats", url], input=stdin)


def ok(url: str, *args: str, stdin: str | None = None) -> str:
    r = mailctl(url, *args, stdin=stdin)
    assert r.exit_code == 0, (r.output, r.stderr if hasattr(r, "stderr") else "")
    return r.output


def refused(url: str, *args: str, stdin: str | None = None) -> str:
    r = mailctl(url, *args, stdin=stdin)
    assert r.exit_code != 0, r.output
    text = r.stderr.strip() if hasattr(r, "stderr") else r.output.strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mailctl: "), text
    assert "Traceback" not in r.output
    return lines[0]


async def _directory(url: str) -> Directory:
    bus = await connect(url, "test", wait=5)
    d = await Directory.open(bus.js, watch=False, passwords=True)
    d._test_bus = bus  # type: ignore[attr-defined]
    return d


def directory_state(url: str) -> Directory:
    async def go() -> Directory:
        d = await _directory(url)
        await d._test_bus.close()  # type: ignore[attr-defined]
        return d

    return asyncio.run(go())


def hashes(url: str) -> set[str]:
    """The users with a password hash in CREDENTIALS."""

    async def go() -> set[str]:
        bus = await connect(url, "test", wait=5)
        try:
            creds = await Credentials.open(bus.js, watch=False)
            return {u for u in ("alice@example.org", "bob@example.org") if creds.hash_of(u)}
        finally:
            await bus.close()

    return asyncio.run(go())


def test_domains_users_aliases(bus: Bus, nats_server: NatsServer) -> None:
    url = nats_server.url
    assert "domain example.org added" in ok(url, "domain", "add", "Example.ORG")
    ok(url, "domain", "add", "other.test", "--catch-all", "postmaster@other.test")
    assert "already exists" in refused(url, "domain", "add", "example.org")
    assert "bad domain" in refused(url, "domain", "add", "not a domain")
    listing = ok(url, "domain", "list")
    assert "example.org  0 users" in listing and "catch-all postmaster@other.test" in listing

    out = ok(
        url,
        "user",
        "add",
        "alice@example.org",
        "--quota",
        "2G",
        stdin="hunter2hunter2\nhunter2hunter2\n",
    )
    assert "user alice@example.org added (account " in out
    assert "hunter2" not in out
    ok(
        url,
        "user",
        "add",
        "bob@example.org",
        "--password-stdin",
        "--quota-messages",
        "500",
        stdin="bob-password\n",
    )
    assert "at least 8" in refused(
        url, "user", "add", "carol@example.org", "--password-stdin", stdin="short\n"
    )
    assert "no domain" in refused(
        url, "user", "add", "x@nowhere.test", "--password-stdin", stdin="password123\n"
    )
    assert "not a size" in mailctl(url, "user", "add", "d@example.org", "--quota", "lots").output

    d = directory_state(url)
    alice, bob = d.user("alice@example.org"), d.user("bob@example.org")
    assert alice is not None and bob is not None
    assert alice.quota_bytes == 2 * 1024**3 and bob.quota_messages == 500
    users = ok(url, "user", "list", "example.org")
    assert "alice@example.org  account " in users and "quota 2G / unlimited messages" in users
    assert "500 messages" in users

    ok(url, "user", "passwd", "bob@example.org", "--password-stdin", stdin="new-bob-password\n")
    assert "no user" in refused(
        url, "user", "passwd", "nobody@example.org", "--password-stdin", stdin="x" * 9 + "\n"
    )

    async def auth() -> tuple[bool, bool]:
        dd = await _directory(url)
        try:
            new = await dd.authenticate("bob@example.org", "new-bob-password")
            old = await dd.authenticate("bob@example.org", "bob-password")
            return new is not None, old is not None
        finally:
            await dd._test_bus.close()  # type: ignore[attr-defined]

    assert asyncio.run(auth()) == (True, False)

    assert "storage 2G, messages unlimited" in ok(url, "user", "quota", "alice@example.org")
    assert "storage 500M, messages 10" in ok(
        url, "user", "quota", "alice@example.org", "--bytes", "500M", "--messages", "10"
    )
    assert "storage unlimited" in ok(url, "user", "quota", "alice@example.org", "--bytes", "0")
    assert "no user" in refused(url, "user", "quota", "ghost@example.org")

    assert "team@example.org -> alice@example.org, bob@example.org" in ok(
        url, "alias", "add", "team@example.org", "alice@example.org", "bob@example.org"
    )
    ok(url, "alias", "add", "team@example.org", "ext@remote.example")
    assert "ext@remote.example" in ok(url, "alias", "list")
    ok(url, "alias", "remove", "team@example.org", "ext@remote.example")
    assert "ext@remote.example" not in ok(url, "alias", "list", "example.org")
    assert "is a user" in refused(url, "alias", "add", "alice@example.org", "bob@example.org")

    assert "still has 2 users and 1 aliases" in refused(url, "domain", "remove", "example.org")
    ok(url, "alias", "remove", "team@example.org")
    assert "no alias" in refused(url, "alias", "remove", "team@example.org")
    removed = ok(url, "user", "remove", "bob@example.org", "--data", "/srv/postern")
    assert f"mail kept in /srv/postern/mailstore/accounts/{bob.account_id}" in removed
    assert hashes(url) == {"alice@example.org"}  # bob's hash went with him
    ok(url, "domain", "remove", "example.org", "--force")
    assert directory_state(url).user("alice@example.org") is None
    assert hashes(url) == set()


def test_path_prints_the_account_directory(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    ok(url, "domain", "add", "path.test")
    ok(url, "user", "add", "pat@path.test", "--password-stdin", stdin="password-pat\n")
    user = directory_state(url).user("pat@path.test")
    assert user is not None
    out = ok(url, "path", "PAT@path.test", "--data", str(tmp_path))
    assert out.strip() == str(tmp_path / "mailstore" / "accounts" / user.account_id)
    assert "no user" in refused(url, "path", "nobody@path.test")


def test_purge_without_a_store_removes_nothing(bus: Bus, nats_server: NatsServer) -> None:
    url = nats_server.url
    ok(url, "domain", "add", "purge.test")
    ok(url, "user", "add", "p@purge.test", "--password-stdin", stdin="password-purge\n")
    assert "no store is running" in refused(url, "user", "remove", "p@purge.test", "--purge")
    assert directory_state(url).user("p@purge.test") is not None


def test_unreachable_nats_is_one_line() -> None:
    port = daemons.free_port()
    line = refused(f"nats://127.0.0.1:{port}", "domain", "list")
    assert "cannot reach NATS" in line


def test_status_reports_backlog_and_store_counts(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    ok(url, "domain", "add", "status.test")
    ok(url, "user", "add", "stat@status.test", "--password-stdin", stdin="password-stat\n")

    async def publish(n: int) -> None:
        b = await connect(url, "test-pub", wait=5)
        bodies = await b.js.object_store(names.OBJ_BODIES)
        for i in range(n):
            msg = MailMessage(
                id=new_message_id(),
                mail_from="a@remote.example",
                recipients=["stat@status.test"],
                size=0,
            )
            await publish_mail(
                b.js, bodies, names.SUBJECT_INBOUND, msg, f"Subject: {i}\r\n\r\nbody\r\n".encode()
            )
        await b.close()

    asyncio.run(publish(3))
    ops_port = daemons.free_port()
    r = mailctl(url, "status", "--store", f"http://127.0.0.1:{ops_port}")
    assert r.exit_code == 1 and "inbound backlog: 3 messages" in r.output
    assert f"store http://127.0.0.1:{ops_port}: unreachable" in r.output

    env = {
        **os.environ,
        "POSTERN_NATS_URL": url,
        "POSTERN_DATA": str(tmp_path / "data"),
        "POSTERN_OPS_PORT": str(ops_port),
        "POSTERN_IMAP_PORT": "0",
        "POSTERN_IMAPS_PORT": "0",
        "POSTERN_POP3_PORT": "0",
        "POSTERN_POP3S_PORT": "0",
    }
    log = open(tmp_path / "store.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.store"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "store.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the store did not deliver"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=2) as m:
                    text = m.read().decode()
                if (
                    'postern_deliveries_total{outcome="delivered"} 3.0' in text
                    and "postern_store_disk_used_bytes" in text
                ):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        out = ok(url, "status", "--store", f"http://127.0.0.1:{ops_port}")
        assert "inbound backlog: 0 messages" in out
        assert f"store http://127.0.0.1:{ops_port}: delivered 3 (junk 0)" in out
        assert "failed 0" in out and "disk used " in out
        # --purge: the running store removes the user and erases the mail
        account_id = directory_state(url).user("stat@status.test").account_id  # type: ignore[union-attr]
        mail_dir = account_dir(store_root(tmp_path / "data"), account_id)
        assert mail_dir.exists()
        out = ok(url, "user", "remove", "stat@status.test", "--purge")
        assert "mail erased" in out
        assert not mail_dir.exists()
        assert directory_state(url).user("stat@status.test") is None
        assert "no user" in refused(url, "user", "remove", "stat@status.test", "--purge")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()


@pytest.mark.parametrize(
    "text,value",
    [
        ("0", 0),
        ("unlimited", 0),
        ("1024", 1024),
        ("2G", 2 * 1024**3),
        ("1.5k", 1536),
        ("500MiB", 500 * 1024**2),
    ],
)
def test_sizes(text: str, value: int) -> None:
    from services.ctl.accounts import parse_size

    assert parse_size(text) == value
