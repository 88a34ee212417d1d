"""Split brain with two complete stores (own data directories, ports and nats-servers):
the link is cut (both mirror processes stopped, the stores keep serving), E is delivered
only to the master and F only to the slave (200 each, same mailbox), messages are flagged
and expunged on both sides, a folder renamed on one side onto a name the other side
creates, a folder created on both sides, and a folder deleted on one side and written on
the other; then the link heals. Both sides hold every E and F exactly once, no UID names
two messages, UIDVALIDITY is unchanged, no expunged message came back, the digests are
equal, nothing is left in MIRROR_CONFLICTS, each folder name is one folder holding both
sides' mail; and an IMAP client connected to either side through the split saw UIDs only
grow."""

from __future__ import annotations

import asyncio
import hashlib
import imaplib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from services.ctl import daemons
from services.mirror.sink import STREAM_CONFLICTS
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import ROOT, Side, contents, digests, request, until

pytestmark = pytest.mark.slow

EACH = 200
PASSWORD = "password-sam"
ADDRESS = "sam@split.test"


class SplitSide(Side):
    """A side whose mirror can be stopped alone (the link cut), with an IMAP port."""

    def __init__(self, tmp: Path, node: str, peer: str) -> None:
        super().__init__(tmp, node, peer)
        self.imap_port = daemons.free_port()
        self.mirror: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "POSTERN_IMAP_PORT": str(self.imap_port),
            "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
        }

    def _spawn(self, module: str) -> subprocess.Popen[bytes]:
        env = {**self.env(), "POSTERN_OPS_PORT": str(daemons.free_port())}
        with open(self.log, "ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=fh, stderr=fh
            )
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._spawn("services.store")
        self.mirror = self._spawn("services.mirror")

    def cut(self) -> None:
        assert self.mirror is not None
        self.mirror.terminate()
        self.mirror.wait(60)
        self.procs.remove(self.mirror)
        self.mirror = None

    def heal(self) -> None:
        self.mirror = self._spawn("services.mirror")


async def deliver(bus: Bus, subjects: list[str]) -> None:
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    pubs = []
    for s in subjects:
        body = f"From: x@x.example\r\nSubject: {s}\r\n\r\n{os.urandom(100).hex()}\r\n"
        msg = MailMessage(
            id=new_message_id(), mail_from="x@x.example", recipients=[ADDRESS], size=0
        )
        pubs.append(publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, body.encode()))
    await asyncio.gather(*pubs)


async def opened(bus: Bus, account: str) -> bool:
    """The store holds the account (delivered to): only then ask it for digests, which
    open a missing account as an empty replica."""
    return account in (await request(bus, "accounts", {}))["accounts"]


def appended(subject: str) -> bytes:
    """The message :meth:`Client.append` stores."""
    return f"From: w@x.example\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def digest_of(*subjects: str) -> list[str]:
    return sorted(hashlib.sha256(appended(s)).hexdigest() for s in subjects)


class Client:
    """An IMAP client kept connected to one store through the split (imaplib in a thread)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.imap: imaplib.IMAP4 | None = None
        self.uidvalidity = 0
        self.seen: dict[int, str] = {}  # UID → Subject, as this client was shown them

    async def call(self, *args: str, may_fail: bool = False) -> list[bytes]:
        """A UID command; ``may_fail``: a NO is an answer too (RFC 2180 §4.2.1: a message
        expunged by another session)."""
        assert self.imap is not None
        typ, data = await asyncio.to_thread(self.imap.uid, *args)
        assert typ == "OK" or (may_fail and typ == "NO"), data
        return [d for d in data if isinstance(d, bytes)] + [
            d[0] + d[1] for d in data if isinstance(d, tuple)
        ]

    async def connect(self) -> None:
        self.imap = await asyncio.to_thread(imaplib.IMAP4, "127.0.0.1", self.port)
        await asyncio.to_thread(self.imap.login, ADDRESS, PASSWORD)
        typ, _ = await asyncio.to_thread(self.imap.select, "INBOX")
        assert typ == "OK"
        (value,) = self.imap.untagged_responses["UIDVALIDITY"][:1]
        assert isinstance(value, bytes)
        self.uidvalidity = int(value)

    async def command(self, *args: str) -> None:
        assert self.imap is not None
        typ, data = await asyncio.to_thread(self.imap._simple_command, *args)
        assert typ == "OK", data

    async def append(self, mailbox: str, subject: str) -> None:
        assert self.imap is not None
        typ, _ = await asyncio.to_thread(self.imap.append, mailbox, "", "", appended(subject))
        assert typ == "OK"

    async def listing(self) -> dict[int, str]:
        """Every UID in INBOX with its Subject; asserts UIDs only grew for this client."""
        rows: list[bytes] = []
        for _ in range(50):  # NO [EXPUNGEISSUED]: the peer expunged meanwhile; look again
            await self.command("NOOP")
            rows = await self.call(
                "FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])", may_fail=True
            )
            if not any(b"EXPUNGEISSUED" in r for r in rows):
                break
        now: dict[int, str] = {}
        for row in rows:
            m = re.search(rb"UID (\d+).*?Subject: (\S+)", row, re.S)
            if m:
                now[int(m[1])] = m[2].decode()
        known_max = max(self.seen, default=0)
        for uid, subject in now.items():
            if uid in self.seen:
                assert self.seen[uid] == subject, f"UID {uid} names two messages"
            else:
                assert uid > known_max, f"new UID {uid} below {known_max} already shown"
        self.seen.update(now)
        return now

    async def uids_of(self, subjects: list[str]) -> list[int]:
        now = await self.listing()
        return sorted(u for u, s in now.items() if s in subjects)

    def close(self) -> None:
        if self.imap is not None:
            try:
                self.imap.logout()
            except (OSError, imaplib.IMAP4.error):
                pass


async def test_split_brain_heals_without_loss(tmp_path: Path) -> None:
    a, b = SplitSide(tmp_path, "store-a", "store-b"), SplitSide(tmp_path, "store-b", "store-a")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    bus_a, bus_b = await fresh_bus(a.nats.url), await fresh_bus(b.nats.url)
    dir_a, dir_b = await Directory.open(bus_a.js), await Directory.open(bus_b.js)
    for d in (dir_a, dir_b):
        await d.add_domain("split.test")
    user = await dir_a.add_user(ADDRESS, PASSWORD)
    await dir_b._put("user", user.address, user, create=True)
    await dir_b.set_password(user.address, PASSWORD)  # the hash: CREDENTIALS, not the record
    await dir_a.close()
    await dir_b.close()
    account = user.account_id
    clients = [Client(a.imap_port), Client(b.imap_port)]
    try:
        a.start()
        b.start()
        await deliver(bus_a, ["pre0", "pre1", "pre2"])

        async def converged() -> bool:
            try:
                if not await opened(bus_a, account):  # a digest request would open it empty
                    return False
                if (await queue.queue(bus_a.js, "store-b"))[0]:
                    return False
                if (await queue.queue(bus_b.js, "store-a"))[0]:
                    return False
                da, db = await digests(bus_a, account), await digests(bus_b, account)
            except Exception:  # a store or stream still starting
                return False
            return da == db and "INBOX" in da and da["INBOX"][1] != "0" * 64

        await until(converged, "the first mail reached both stores", [a, b])
        for c in clients:
            await c.connect()
        await clients[0].command("CREATE", "Work")
        await clients[0].append("Work", "work0")
        await clients[0].command("CREATE", "Old")
        await clients[0].append("Old", "old0")
        await until(converged, "the folders reached the slave", [a, b])
        for c in clients:
            assert len(await c.listing()) == 3
        assert clients[0].uidvalidity == clients[1].uidvalidity
        # --- the link is cut: E to the master only, F to the slave only ----------------
        a.cut()
        b.cut()
        e = [f"E{i}" for i in range(EACH)]
        f = [f"F{i}" for i in range(EACH)]
        await deliver(bus_a, e)
        await deliver(bus_b, f)

        async def delivered() -> bool:
            return (
                len(await clients[0].uids_of(e)) == EACH
                and len(await clients[1].uids_of(f)) == EACH
            )

        await until(delivered, "E on the master, F on the slave", [a, b])
        ea, fb = await clients[0].uids_of(e), await clients[1].uids_of(f)
        assert set(ea) & set(fb)  # the same UIDs name different messages now
        pre_a, pre_b = await clients[0].uids_of(["pre1"]), await clients[1].uids_of(["pre1"])
        await clients[0].call("STORE", ",".join(map(str, ea[:10] + pre_a)), "+FLAGS", "(\\Seen)")
        await clients[1].call("STORE", ",".join(map(str, fb[:10])), "+FLAGS", "(\\Flagged)")
        await clients[1].call("STORE", ",".join(map(str, pre_b)), "+FLAGS", "($Split)")
        gone = e[10:20] + f[10:20] + ["pre2"]
        for c, uids in ((clients[0], await clients[0].uids_of([*e[10:20], "pre2"])),
                        (clients[1], await clients[1].uids_of(f[10:20]))):  # fmt: skip
            await c.call("STORE", ",".join(map(str, uids)), "+FLAGS", "(\\Deleted)")
            await c.command("EXPUNGE")
        await clients[0].command("RENAME", "Work", "Projects")
        await clients[1].append("Work", "work-b")
        await clients[1].command("CREATE", "Projects")  # the name the master renamed onto
        await clients[1].append("Projects", "projects-b")
        for i, c in enumerate(clients):  # made on both sides
            await c.command("CREATE", "Shared")
            await c.append("Shared", f"shared{i}")
        await clients[0].command("DELETE", "Old")  # deleted on one side, written on the other
        await clients[1].append("Old", "old-b")
        for c in clients:
            await c.listing()
        # --- heal ---------------------------------------------------------------------
        a.heal()
        b.heal()
        await until(converged, "both sides converged after the split", [a, b])
        listings = [await c.listing() for c in clients]  # asserts: UIDs only grew
        assert listings[0] == listings[1]
        for c in clients:
            assert c.uidvalidity == clients[0].uidvalidity
        subjects = sorted(listings[0].values())
        wanted = sorted(s for s in ["pre0", "pre1", *e, *f] if s not in gone)
        assert subjects == wanted  # every E and F exactly once, nothing expunged back
        for bus in (bus_a, bus_b):  # nothing left unresolved
            assert (await bus.js.stream_info(STREAM_CONFLICTS)).state.messages == 0
        boxes = await digests(bus_a, account)
        assert "Projects" in boxes and "Work" not in boxes
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        assert got_a == got_b  # same mailboxes, UIDVALIDITY, UIDs, bytes and flags
        inbox = next(k for k in got_a if k.startswith("INBOX/"))
        assert int(inbox.split("/")[1]) == clients[0].uidvalidity
        uids = [u for u, _, _ in got_a[inbox]]
        assert len(uids) == len(set(uids)) == len(wanted)
        by_name: dict[str, list[str]] = {}
        for key, listed in got_a.items():
            by_name.setdefault(key.rsplit("/", 1)[0], []).extend(s for _, s, _ in listed)
        assert all("(merging)" not in name for name in by_name)
        # one folder per name, holding both sides' mail: work0, work-b, projects-b;
        # shared0 and shared1; of Old only what the deleting side never saw
        assert len([k for k in got_a if k.startswith("Projects/")]) == 1
        assert sorted(by_name["Projects"]) == digest_of("work0", "work-b", "projects-b")
        assert len([k for k in got_a if k.startswith("Shared/")]) == 1
        assert sorted(by_name["Shared"]) == digest_of("shared0", "shared1")
        assert by_name["Old"] == digest_of("old-b")
        by_subject = {listings[0][u]: fl for u, _, fl in got_a[inbox]}
        assert by_subject["E0"] == ["\\Seen"] and by_subject["F0"] == ["\\Flagged"]
        log_a = a.log.read_text() + b.log.read_text()
        assert "mirror conflict resolved" in log_a
    finally:
        for c in clients:
            c.close()
        for side in (a, b):
            for p in side.procs:
                p.kill()
                p.wait()
        await bus_a.close()
        await bus_b.close()
        a.nats.stop()
        b.nats.stop()
