"""The mirror pair with NATS security on both sides (issue 18): each nats-server has the
per-service users and requires TLS; each store and mirror connects as its own user, and
each mirror reaches the peer's server as the ``mirror`` user over TLS. Mail a filter user
hands off on one side reaches the other store identically; the user, made on one side
only, logs in on the other with the password hash the mirror copied (``CREDENTIALS``,
which only the store and the mirror may read), and so does a password changed there
later; neither server logs a permissions violation (the mirror's and store's allow lists
are complete)."""

from __future__ import annotations

import asyncio
import imaplib
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from nats.errors import Error as NatsError

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.bus.setup import declare_all
from mailcore.credentials import credential_key
from mailcore.directory import Directory
from services.ctl import daemons
from tests.conftest import TEST_LIMITS
from tests.services.mirror.conftest import ROOT, Side, digests, until
from tests.support.securenats import SecureNats

pytestmark = pytest.mark.slow
COUNT = 20


class SecureSide(Side):
    """A side whose nats-server has users and TLS; store and mirror as their own users."""

    def __init__(self, tmp: Path, node: str, peer: str) -> None:
        super().__init__(tmp, node, peer)
        self.nats = SecureNats(self.dir / "nats", tls=True)
        self.peer_nats: SecureNats | None = None

    def env(self) -> dict[str, str]:
        # logins are tried until the mirror has copied the hash: no lockout meanwhile
        return super().env() | {
            "POSTERN_AUTH_FAIL_DELAY": "0.01",
            "POSTERN_LOGIN_MAX_FAILURES": "100000",
            "POSTERN_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
        }

    def _user_env(self, user: str) -> dict[str, str]:
        assert isinstance(self.nats, SecureNats) and self.nats.tls is not None
        password = self.dir / f"{user}.password"
        password.write_text(self.nats.passwords[user])
        password.chmod(0o600)
        env = {
            "POSTERN_NATS_USER": user,
            "POSTERN_NATS_PASSWORD_FILE": str(password),
            "POSTERN_NATS_TLS_CA": str(self.nats.tls.ca),
        }
        if user == "mirror" and self.peer_nats is not None and self.peer_nats.tls is not None:
            env |= {
                "POSTERN_PEER_NATS_USER": "mirror",
                "POSTERN_PEER_NATS_PASSWORD": self.peer_nats.passwords["mirror"],
                "POSTERN_PEER_TLS_CA": str(self.peer_nats.tls.ca),
            }
        return env

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for module, user in (("services.store", "store"), ("services.mirror", "mirror")):
            env = {**self.env(), **self._user_env(user)}
            env["POSTERN_OPS_PORT"] = str(daemons.free_port())
            with open(self.log, "ab") as fh:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=fh, stderr=fh
                    )
                )

    def violations(self) -> list[str]:
        text = self.nats.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "Violation" in line]


def login(side: Side, password: str) -> Callable[[], Awaitable[bool]]:
    def attempt() -> bool:
        with imaplib.IMAP4("127.0.0.1", side.imap_port, timeout=30) as imap:
            try:
                imap.login("sam@secure.test", password)
            except imaplib.IMAP4.error:
                return False
            imap.logout()
            return True

    async def check() -> bool:
        try:
            return await asyncio.to_thread(attempt)
        except OSError:  # the store still starting
            return False

    return check


async def test_pair_replicates_under_per_service_users_over_tls(tmp_path: Path) -> None:
    a, b = SecureSide(tmp_path, "store-a", "store-b"), SecureSide(tmp_path, "store-b", "store-a")
    assert isinstance(a.nats, SecureNats) and isinstance(b.nats, SecureNats)
    a.peer_nats, b.peer_nats = b.nats, a.nats
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    admin_a, admin_b = await a.nats.bus("mailctl"), await b.nats.bus("mailctl")
    try:
        for admin in (admin_a, admin_b):
            await declare_all(admin.js, TEST_LIMITS)
        directory = await Directory.open(admin_a.js)
        await directory.add_domain("secure.test")
        account = (await directory.add_user("sam@secure.test", "password-sam")).account_id
        await directory.close()
        a.start()  # the peer's store and mirror start once the mail is queued for it
        filt = await a.nats.bus("filter")
        try:
            bodies = await filt.js.object_store(names.OBJ_BODIES)
            for i in range(COUNT):
                body = f"From: s{i}@x.example\r\nSubject: m {i}\r\n\r\n{os.urandom(64).hex()}\r\n"
                msg = MailMessage(
                    id=new_message_id(), mail_from=f"s{i}@x.example",
                    recipients=["sam@secure.test"], size=0,
                )  # fmt: skip
                await publish_mail(filt.js, bodies, names.SUBJECT_INBOUND, msg, body.encode())
        finally:
            await filt.close()

        async def queued_for_b() -> bool:
            count, _ = await queue.queue(admin_a.js, "store-b")
            return count >= COUNT + 6  # six default mailboxes, then every delivery

        await until(queued_for_b, "the deliveries queued for the peer", [a])
        b.start()

        async def converged() -> bool:
            count, _ = await queue.queue(admin_a.js, "store-b")
            if count:
                return False
            try:
                da, db = await digests(admin_a, account), await digests(admin_b, account)
            except (KeyError, TimeoutError, NatsError):  # a store still starting
                return False
            return bool(da) and da == db and da["INBOX"][1] != "0" * 64

        await until(converged, "the peer store caught up over TLS", [a, b])
        # logins on the peer store: the hash came with the mirror's directory follow
        await until(login(b, "password-sam"), "the user logs in on the peer store", [a, b])
        directory = await Directory.open(admin_a.js, watch=False)
        await directory.set_password("sam@secure.test", "password-new")
        await until(login(b, "password-new"), "a new password works on the peer", [a, b])
        assert not await login(b, "password-sam")()
        creds = await admin_b.js.key_value(names.KV_CREDENTIALS)
        assert b"argon2id" in ((await creds.get(credential_key("sam@secure.test"))).value or b"")
        assert a.violations() == []
        assert b.violations() == []
    finally:
        a.stop()
        b.stop()
        await admin_a.close()
        await admin_b.close()
        a.nats.stop()
        b.nats.stop()
