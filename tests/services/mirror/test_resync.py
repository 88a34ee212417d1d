"""Resync of a mirrored pair (two complete stores, own data directories and nats-servers):
a full copy to a wiped slave whose master's journal was pruned, interrupted and resumed;
resync-config (a login on the slave) and live directory changes both ways; resync-mkdir;
large bodies gone from MIRROR_BODIES on both sides; resync-fast after 20 divergences
fixing exactly those; the scheduled repair pass."""

from __future__ import annotations

import asyncio
import hashlib
import imaplib
import json
import os
import random
import re
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from mailcore.mailstore.layout import account_dir, index_path
from mailcore.mailstore.records import AppendRecord
from mailcore.mailstore.repair import Repair
from services.ctl import daemons
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import ROOT, Side, contents, digests, mailctl, request, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "$label1"]


class PairSide(Side):
    """A side with a known IMAP port and extra settings."""

    def __init__(self, tmp: Path, node: str, peer: str) -> None:
        super().__init__(tmp, node, peer)
        self.imap_port = daemons.free_port()
        self.extra: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "POSTERN_IMAP_PORT": str(self.imap_port),
            "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
            **self.extra,
        }


def msg(i: int, size: int = 200) -> bytes:
    return f"From: s{i}@x.example\r\nSubject: m {i}\r\n\r\n{os.urandom(size).hex()}\r\n".encode()


async def seed(data: Path, account: str, count: int, *, prune: bool) -> None:
    """``count`` messages (random flags), one of ~700 KiB, an empty subscribed folder;
    with ``prune``, the journal then loses all but its last records."""
    store = await MailStore.open(store_root(data))
    try:
        acct = await store.account(account)
        inbox = await acct.mailbox("INBOX")
        rnd = random.Random(7)
        items = [(msg(i), rnd.sample(FLAGS, rnd.randint(0, 2)), None, False) for i in range(count)]
        for start in range(0, count, 200):
            await acct.append_many(inbox.id, items[start : start + 200])
        big = b"From: big@x.example\r\nSubject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 9000
        await acct.append(inbox.id, big)
        await acct.create_mailbox("Empty/Sub")
        await acct.set_subscribed("Empty/Sub", True)
        path = index_path(account_dir(store_root(data), account))
    finally:
        await store.close()
    if prune:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("DELETE FROM journal WHERE seq <= (SELECT max(seq) - 5 FROM journal)")
        conn.close()


async def add_user(bus: Bus, address: str, password: str) -> str:
    directory = await Directory.open(bus.js)
    try:
        if not directory.is_local_domain("pair.test"):
            await directory.add_domain("pair.test")
        return (await directory.add_user(address, password)).account_id
    finally:
        await directory.close()


def imap_login(port: int, user: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", port) as imap:
        try:
            imap.login(user, password)
        except imaplib.IMAP4.error:
            return False
        imap.logout()
        return True


async def mailctl_fails_or_out(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "mailctl"), *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def objects(bus: Bus) -> list[str]:
    try:
        store = await bus.js.object_store(names.OBJ_MIRROR_BODIES)
        return [o.name for o in await store.list(ignore_deletes=True) if not o.deleted]
    except NotFoundError:
        return []


def settled(a: PairSide, b: PairSide, bus_a: Bus, bus_b: Bus, account: str) -> Any:
    async def check() -> bool:
        count, _ = await queue.queue(bus_a.js, b.node)
        back, _ = await queue.queue(bus_b.js, a.node)
        if count or back:
            return False
        try:
            return await digests(bus_a, account) == await digests(bus_b, account)
        except (KeyError, TimeoutError, NatsError):
            return False

    return check


def answers(bus: Bus) -> Any:
    async def check() -> bool:
        try:
            return "accounts" in await request(bus, "accounts", {})
        except NatsError:
            return False

    return check


async def start_pair(tmp: Path) -> tuple[PairSide, PairSide, Bus, Bus]:
    a, b = PairSide(tmp, "store-a", "store-b"), PairSide(tmp, "store-b", "store-a")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    return a, b, await fresh_bus(a.nats.url), await fresh_bus(b.nats.url)


def cleanup(*sides: PairSide) -> None:
    for side in sides:
        for p in side.procs:
            p.kill()
            p.wait()
        side.procs = []
        side.nats.stop()


async def test_full_resync_resumes_config_mkdir_and_large_bodies(tmp_path: Path) -> None:
    a, b, bus_a, bus_b = await start_pair(tmp_path)
    try:
        account = await add_user(bus_a, "pat@pair.test", "password-pat")
        stray = await add_user(bus_b, "stray@pair.test", "password-stray")
        await seed(a.data, account, 600, prune=True)
        # --- resync-config: the slave's directory becomes the master's ------------------------
        peer = ["--nats", a.nats.url, "--peer-nats", b.nats.url, "--peer", "store-b"]
        out = await mailctl("mirror", "resync-config", *peer)
        # written: the domain (another one), pat and pat's hash; deleted: stray and its hash
        assert "3 entries written, 2 deleted" in out, out
        copy = await Directory.open(bus_b.js, watch=False, passwords=True)
        user = copy.user("pat@pair.test")
        assert user is not None and user.account_id == account and stray != account
        assert copy.user("stray@pair.test") is None
        assert (await copy.authenticate("pat@pair.test", "password-pat")) is not None
        a.start()
        b.start()
        await until(answers(bus_a), "store A answers", [a, b])
        await until(answers(bus_b), "store B answers", [a, b])

        async def b_login() -> bool:
            return await asyncio.to_thread(imap_login, b.imap_port, "pat@pair.test", "password-pat")

        await until(b_login, "a login on the slave", [a, b])
        # --- full resync, killed half-way, then resumed ------------------------------------
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "mailctl"), "mirror", "resync", *peer,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        seen: list[str] = []
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, f"resync ended before it was interrupted: {seen}"
            seen.append(line)
            done = line.split(": ", 1)[1].split("/")[0] if line.startswith("resync: ") else "0"
            if 0 < int(done) < 601:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                break
        st = json.loads(await mailctl("mirror", "status", "--json", "--nats", a.nats.url,
                                      "--peer", "store-b"))  # fmt: skip
        assert st["resync"]["state"] == "running" and 0 < st["resync"]["messages_done"] < 601
        added_before = st["resync"]["fixes"].get("added", 0)
        out = await mailctl("mirror", "resync", *peer)
        assert "(resumed)" in out and "fixed" in out
        added = int(out.split("added ")[1].split(",")[0].split(";")[0].strip())
        assert added_before > 0 and 0 < added - added_before < 601  # only what was left
        st = json.loads(await mailctl("mirror", "status", "--json", "--nats", a.nats.url,
                                      "--peer", "store-b"))  # fmt: skip
        assert st["resync"]["state"] == "done" and st["resync"]["messages_done"] == 601
        text = await mailctl("mirror", "status", "--nats", a.nats.url, "--peer", "store-b")
        assert "resync (full): done" in text
        await until(settled(a, b, bus_a, bus_b, account), "the wiped slave filled", [a, b])
        # --- live: a change on the master after the resync reaches the slave ----------------
        bodies = await bus_a.js.object_store(names.OBJ_BODIES)
        big = b"From: big2@x.example\r\nSubject: big2\r\n\r\n" + (b"z" * 76 + b"\r\n") * 9000
        mail = MailMessage(
            id=new_message_id(), mail_from="big2@x.example", recipients=["pat@pair.test"], size=0
        )
        await publish_mail(bus_a.js, bodies, names.SUBJECT_INBOUND, mail, big)

        async def big_arrived() -> bool:
            state = await request(bus_b, "state", {"account": account})
            return sum(int(m["messages"]) for m in state["mailboxes"]) == 602

        await until(big_arrived, "the large delivery", [a, b])
        await until(settled(a, b, bus_a, bus_b, account), "the large delivery replicated", [a, b])
        # the large bodies' objects are gone on both sides once the slave committed
        assert await objects(bus_a) == [] and await objects(bus_b) == []
        # --- live directory changes, both ways ---------------------------------------------
        await add_user(bus_a, "sam@pair.test", "password-sam")

        async def sam_on_b() -> bool:
            return await asyncio.to_thread(imap_login, b.imap_port, "sam@pair.test", "password-sam")

        await until(sam_on_b, "a user added on the master logs in on the slave", [a, b])
        directory_b = await Directory.open(bus_b.js)
        await directory_b.set_password("pat@pair.test", "password-new")
        await directory_b.close()

        async def new_password_on_a() -> bool:
            return await asyncio.to_thread(imap_login, a.imap_port, "pat@pair.test", "password-new")

        await until(
            new_password_on_a, "a password changed on the slave works on the master", [a, b]
        )
        # --- resync-mkdir: an empty folder and its subscription lost on the slave -----------
        sub = next(
            box
            for box in (await request(bus_b, "state", {"account": account}))["mailboxes"]
            if box["name"] == "Empty/Sub"
        )
        hdr = {
            names.HDR_MIRROR_REPAIR: json.dumps(
                {"op": "drop", "account": account, "origin": "store-a",
                 "mailbox_id": sub["id"], "modseq": sub["highestmodseq"]}
            )
        }  # fmt: skip
        await bus_b.nc.request(names.SUBJECT_REPLICA + "force", b"", timeout=30, headers=hdr)
        lost = await request(bus_b, "state", {"account": account})
        assert "Empty/Sub" not in [m["name"] for m in lost["mailboxes"]]
        out = await mailctl("mirror", "resync-mkdir", *peer)
        assert "mkdir resync to store-b done" in out
        got = await request(bus_b, "state", {"account": account})
        mine = await request(bus_a, "state", {"account": account})
        assert [(m["id"], m["name"], m["uidvalidity"]) for m in got["mailboxes"]] == [
            (m["id"], m["name"], m["uidvalidity"]) for m in mine["mailboxes"]
        ]
        assert got["subscriptions"] == mine["subscriptions"] and "Empty/Sub" in got["subscriptions"]
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        assert got_a == got_b
        assert sum(len(v) for v in got_a.values()) == 602
        assert any(k.startswith("Empty/Sub/") and v == [] for k, v in got_b.items())
    finally:
        await bus_a.close()
        await bus_b.close()
        cleanup(a, b)


async def diverge(a_data: Path, b_data: Path, account: str, per_kind: int, seed_: int) -> None:
    """``per_kind`` of each: missing on B, extra on B, other flags on B, expunged on A
    only. Made as each store's forced writes marked as the other's, so no mirror ships
    them: they stay divergences until a repair."""
    rnd = random.Random(seed_)
    store_b = await MailStore.open(store_root(b_data))
    try:
        acct = await store_b.account(account)
        rep = Repair(acct, "store-a")
        inbox = await acct.mailbox("INBOX")
        snap = await acct.snapshot(inbox.id)
        picks = rnd.sample(snap.uids[:-1], 3 * per_kind)
        missing, flagged, expunged = (
            picks[:per_kind],
            picks[per_kind : 2 * per_kind],
            picks[2 * per_kind :],
        )
        await rep.expunge(inbox.id, missing, snap.highestmodseq + 1)
        for uid in flagged:
            i = snap.uids.index(uid)
            await rep.flags(inbox.id, uid, snap.highestmodseq + 2, snap.flags[i] ^ {"$odd"})
        status = await acct.status(inbox.id)
        for k in range(per_kind):
            data = msg(10_000 + seed_ * 100 + k)
            rec = AppendRecord(
                0, 1.0e9, inbox.id, inbox.uidvalidity, status.uidnext + k,
                snap.highestmodseq + 3 + k, 1.0e9, len(data), hashlib.sha256(data).hexdigest(),
                0, frozenset({"\\Seen"}),
            )  # fmt: skip
            await rep.append(rec, data)
    finally:
        await store_b.close()
    store_a = await MailStore.open(store_root(a_data))
    try:
        acct = await store_a.account(account)
        inbox = await acct.mailbox("INBOX")
        await Repair(acct, "store-b").expunge(inbox.id, expunged, 10**6)
    finally:
        await store_a.close()


async def test_resync_fast_fixes_twenty_divergences_and_the_repair_pass(tmp_path: Path) -> None:
    a, b, bus_a, bus_b = await start_pair(tmp_path)
    try:
        account = await add_user(bus_a, "pat@pair.test", "password-pat")
        await seed(a.data, account, 300, prune=False)
        a.start()
        b.start()
        await until(settled(a, b, bus_a, bus_b, account), "live replication", [a, b])
        a.stop()
        b.stop()
        await diverge(a.data, b.data, account, 5, 1)
        a.start()
        b.start()
        await until(answers(bus_a), "store A answers", [a, b])
        await until(answers(bus_b), "store B answers", [a, b])
        assert await digests(bus_a, account) != await digests(bus_b, account)
        peer = ["--nats", a.nats.url, "--peer-nats", b.nats.url, "--peer", "store-b"]

        async def queues_empty() -> bool:
            count, _ = await queue.queue(bus_a.js, "store-b")
            back, _ = await queue.queue(bus_b.js, "store-a")
            return count == back == 0

        await until(queues_empty, "nothing queued", [a, b])
        out = await mailctl("mirror", "resync-fast", *peer)
        assert "fixed 20 messages" in out, out
        assert "added 5" in out and "returned 5" in out and "removed 5" in out
        assert "flags 5" in out
        assert await digests(bus_a, account) == await digests(bus_b, account)
        out = await mailctl("mirror", "resync-fast", *peer)
        assert "fixed 0 messages" in out
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        assert got_a == got_b and sum(len(v) for v in got_a.values()) == 301 + 5 - 5
        # --- the scheduled repair pass: due every 2 s here ----------------------------------
        await diverge(a.data, b.data, account, 1, 2)
        a.extra = {"POSTERN_MIRROR_REPAIR_INTERVAL": "2"}
        a.start()
        b.start()

        async def repaired() -> bool:
            record = await queue.read_status(bus_a.js, "repair.store-b")
            return int(record.get("runs", 0)) >= 1

        await until(repaired, "the repair pass ran", [a, b])
        record = await queue.read_status(bus_a.js, "repair.store-b")
        assert record["fixed_total"] == 4, record  # later passes (every 2 s) find nothing
        text = await mailctl("mirror", "status", "--nats", a.nats.url, "--peer", "store-b")
        assert "repair pass: last" in text and re.search(r"; 4 in \d+ runs", text), text
        assert await digests(bus_a, account) == await digests(bus_b, account)
        log = a.log.read_text()
        assert "mirror repair pass" in log
        a.stop()
        b.stop()
        assert await contents(a.data, account) == await contents(b.data, account)
    finally:
        await bus_a.close()
        await bus_b.close()
        cleanup(a, b)
