"""The mirror pair with NATS security on both sides (issue 18): each nats-server has the
per-service users and requires TLS; each store and mirror connects as its own user, and
each mirror reaches the peer's server as the ``mirror`` user over TLS. Mail a filter user
hands off on one side reaches the other store identically, and neither server logs a
permissions violation (the mirror's and store's allow lists are complete)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.errors import Error as NatsError

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.bus.setup import declare_all
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
        assert a.violations() == []
        assert b.violations() == []
    finally:
        a.stop()
        b.stop()
        await admin_a.close()
        await admin_b.close()
        a.nats.stop()
        b.nats.stop()
