"""Two complete stores (own data directories, ports and nats-servers), each with its own
mirror process: mail delivered while one side is down reaches it when it returns, with
the same UIDs, UIDVALIDITY, flags and digests; kill -9 of the master while its peer is
down loses nothing queued; changes made on both sides converge, and none comes back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.errors import Error as NatsError

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from mailcore.mailstore.model import FlagOp
from services.ctl import daemons
from tests.conftest import fresh_bus
from tests.support.daemons import NatsServer

ROOT = Path(__file__).resolve().parents[3]
TOTAL = 1000

pytestmark = pytest.mark.slow


class Side:
    """One store of the pair: nats-server, store process, mirror process."""

    def __init__(self, tmp: Path, node: str, peer: str) -> None:
        self.node, self.peer = node, peer
        self.dir = tmp / node
        self.nats = NatsServer(self.dir / "nats")
        self.data = self.dir / "data"
        self.log = self.dir / "processes.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.peer_url = ""

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "POSTERN_NATS_URL": self.nats.url,
            "POSTERN_DATA": str(self.data),
            "POSTERN_IMAP_PORT": "0",
            "POSTERN_IMAPS_PORT": "0",
            "POSTERN_POP3_PORT": "0",
            "POSTERN_POP3S_PORT": "0",
            "POSTERN_FSYNC": "true",
            "POSTERN_LOG_FORMAT": "console",
            "POSTERN_MIRROR_NODE": self.node,
            "POSTERN_MIRROR_PEER": self.peer,
            "POSTERN_PEER_NATS_URL": self.peer_url,
            "POSTERN_MIRROR_STREAM_MAX_BYTES": str(256 * 1024**2),
        }

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for module in ("services.store", "services.mirror"):
            env = {**self._env(), "POSTERN_OPS_PORT": str(daemons.free_port())}
            with open(self.log, "ab") as fh:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=fh, stderr=fh
                    )
                )

    def alive(self) -> None:
        for p in self.procs:
            assert p.poll() is None, self.log.read_text()[-4000:]

    def kill9(self) -> None:
        for p in self.procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        self.procs = []

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(60)
        self.procs = []


async def mailctl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "mailctl"), *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def request(bus: Bus, op: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await bus.nc.request(names.SUBJECT_REPLICA + op, json.dumps(body).encode(), 30)
    value: dict[str, Any] = json.loads(reply.data)
    return value


async def digests(bus: Bus, account: str) -> dict[str, tuple[int, str]]:
    """Per mailbox name: (id, digest), as the running store reports them."""
    boxes = (await request(bus, "mailboxes", {"account": account}))["mailboxes"]
    out = {}
    for box in boxes:
        d = await request(bus, "digest", {"account": account, "mailbox_id": box["id"]})
        out[box["name"]] = (box["id"], d["digest"])
    return out


async def until(check: Any, what: str, sides: list[Side], timeout: float = 240.0) -> None:
    """Wait for ``check()`` (a guard against a hang, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        for side in sides:
            side.alive()
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.2)


async def contents(data: Path, account: str) -> dict[str, list[tuple[int, str, list[str]]]]:
    """Per mailbox: UIDVALIDITY-qualified (uid, sha256, flags), read from the stopped store."""
    store = await MailStore.open(store_root(data))
    try:
        acct = await store.account(account, replica=True)
        out: dict[str, list[tuple[int, str, list[str]]]] = {}
        for box in await acct.list_mailboxes():
            snap = await acct.snapshot(box.id)
            rows = await acct.fetch(box.id, snap.uids, parsed=False) if snap.uids else []
            listed = []
            for r in rows:
                with acct.open_message(r) as fh:
                    sha = hashlib.sha256(fh.read()).hexdigest()
                listed.append((r.uid, sha, sorted(r.flags)))
            out[f"{box.name}/{box.uidvalidity}"] = listed
        return out
    finally:
        await store.close()


async def test_pair_catch_up_kill9_and_two_way_convergence(tmp_path: Path) -> None:
    a, b = Side(tmp_path, "store-a", "store-b"), Side(tmp_path, "store-b", "store-a")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    bus_a = await fresh_bus(a.nats.url)
    directory = await Directory.open(bus_a.js)
    await directory.add_domain("pair.test")
    user = await directory.add_user("pat@pair.test", "password-pat")
    await directory.close()
    account = user.account_id
    try:
        # --- the slave's whole side is down (store, mirror and its nats-server) ---------
        b.nats.stop()
        a.start()
        bodies = await bus_a.js.object_store(names.OBJ_BODIES)
        for start in range(0, TOTAL, 100):
            pubs = []
            for i in range(start, start + 100):
                body = f"From: s{i}@x.example\r\nSubject: m {i}\r\n\r\n{os.urandom(200).hex()}\r\n"
                msg = MailMessage(
                    id=new_message_id(), mail_from=f"s{i}@x.example",
                    recipients=["pat@pair.test"], size=0,
                )  # fmt: skip
                pubs.append(
                    publish_mail(bus_a.js, bodies, names.SUBJECT_INBOUND, msg, body.encode())
                )
            await asyncio.gather(*pubs)
        # one body above 512 KiB: it travels through MIRROR_BODIES, not inline
        big = b"From: big@x.example\r\nSubject: big\r\n\r\n" + b"y" * 76 + b"\r\n"
        big = big * 9000  # about 700 KiB
        msg = MailMessage(
            id=new_message_id(), mail_from="big@x.example", recipients=["pat@pair.test"], size=0
        )
        await publish_mail(bus_a.js, bodies, names.SUBJECT_INBOUND, msg, big)

        async def queued_for_b() -> bool:
            count, _ = await queue.queue(bus_a.js, "store-b")
            return count >= TOTAL + 1 + 6  # six default mailboxes, then every delivery

        await until(queued_for_b, "1,000 deliveries queued for the slave", [a])
        _, lag = await queue.queue(bus_a.js, "store-b")
        assert lag > 0

        async def status_reported() -> bool:
            return bool((await queue.read_status(bus_a.js, "store-b")).get("sent", 0) >= TOTAL + 7)

        await until(status_reported, "the mirror reported its counters", [a])
        st = json.loads(await mailctl("mirror", "status", "--json", "--nats", a.nats.url))
        assert st["queued"] >= TOTAL + 7 and st["sent"] >= TOTAL + 7
        assert st["lag_seconds"] > 0 and st["peer_link"] is False
        assert st["applied"] == 0
        # --- kill -9 of the master while the slave is down: nothing queued is lost -------
        a.kill9()
        a.start()
        b.nats.start()
        b.start()
        bus_b = await fresh_bus(b.nats.url)

        async def converged() -> bool:
            count, _ = await queue.queue(bus_a.js, "store-b")
            back, _ = await queue.queue(bus_b.js, "store-a")
            if count or back:
                return False
            try:
                return await digests(bus_a, account) == await digests(bus_b, account)
            except (KeyError, TimeoutError, NatsError):  # a store still starting
                return False

        await until(converged, "the slave caught up", [a, b])
        inbox_digest = (await digests(bus_b, account))["INBOX"]
        assert inbox_digest[1] != "0" * 64
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        inbox = next(k for k in got_a if k.startswith("INBOX/"))
        assert len(got_a[inbox]) == TOTAL + 1
        assert got_a == got_b  # same mailboxes, UIDVALIDITY, UIDs, bytes and flags

        # --- changes on both sides (different messages) converge -----------------------
        for data, uids_from, flag in ((a.data, 0, "\\Seen"), (b.data, 500, "\\Flagged")):
            store = await MailStore.open(store_root(data))
            acct = await store.account(account)
            box = await acct.mailbox("INBOX")
            uids = [u for u, _, _ in got_a[inbox][uids_from : uids_from + 20]]
            await acct.store_flags(box.id, uids[:10], FlagOp.ADD, {flag})
            await acct.expunge(box.id, uids[10:], force=True)
            await store.close()
        a.start()
        b.start()
        await until(converged, "both sides' changes converged", [a, b])
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        assert got_a == got_b
        assert len(got_a[inbox]) == TOTAL + 1 - 20
        flagged = [u for u, _, f in got_b[inbox] if "\\Flagged" in f]
        seen_uids = [u for u, _, f in got_b[inbox] if "\\Seen" in f]
        assert len(flagged) == 10 and len(seen_uids) == 10
        # --- the slave wiped: `mailctl mirror resync` sends everything again -------------
        shutil.rmtree(b.data)
        a.start()
        b.start()

        async def a_answers() -> bool:
            try:
                return "accounts" in await request(bus_a, "accounts", {})
            except NatsError:
                return False

        await until(a_answers, "store A answers", [a, b])
        out = await mailctl(
            "mirror", "resync", "--nats", a.nats.url, "--peer-nats", b.nats.url, "--peer", "store-b"
        )
        assert "full resync to store-b done" in out and f"added {TOTAL + 1 - 20}" in out
        await until(converged, "the wiped slave was filled again", [a, b])
        a.stop()
        b.stop()
        assert await contents(b.data, account) == got_a
        await bus_b.close()
    finally:
        for side in (a, b):
            for p in side.procs:
                p.kill()
                p.wait()
        await bus_a.close()
        a.nats.stop()
        b.nats.stop()
