"""What the two-store tests share: one side of a pair (its own nats-server, data
directory, IMAP/POP3 ports, store and mirror processes), ``mailctl`` runs, replica
requests, digests, a wait guard, the stored contents of a stopped store, and mail
handed to a side's ``MAIL_INBOUND`` the way a filter hands it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from services.ctl import daemons
from tests.conftest import fresh_bus
from tests.support.daemons import NatsServer

ROOT = Path(__file__).resolve().parents[3]


class Side:
    """One store of the pair: nats-server, store process, mirror process."""

    def __init__(self, tmp: Path, node: str, peer: str, role: str = "") -> None:
        self.node, self.peer, self.role = node, peer, role
        self.dir = tmp / node
        self.nats = NatsServer(self.dir / "nats")
        self.data = self.dir / "data"
        self.log = self.dir / "processes.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.peer_url = ""
        self.imap_port = daemons.free_port()
        self.pop3_port = daemons.free_port()
        self.store_env: dict[str, str] = {}  # for the store process only (crash points)
        # What a killed store fetched comes back after this many seconds, not after a minute.
        self.ack_wait = 5.0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "POSTERN_NATS_URL": self.nats.url,
            "POSTERN_DATA": str(self.data),
            "POSTERN_IMAP_PORT": str(self.imap_port),
            "POSTERN_IMAPS_PORT": "0",
            "POSTERN_POP3_PORT": str(self.pop3_port),
            "POSTERN_POP3S_PORT": "0",
            "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
            "POSTERN_FSYNC": "true",
            "POSTERN_LOG_FORMAT": "console",
            "POSTERN_MIRROR_NODE": self.node,
            "POSTERN_MIRROR_PEER": self.peer,
            "POSTERN_MIRROR_ROLE": self.role,
            "POSTERN_PEER_NATS_URL": self.peer_url,
            "POSTERN_MIRROR_STREAM_MAX_BYTES": str(256 * 1024**2),
            "POSTERN_DELIVERY_ACK_WAIT": str(self.ack_wait),
        }

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for module in ("services.store", "services.mirror"):
            env = {**self.env(), "POSTERN_OPS_PORT": str(daemons.free_port())}
            if module == "services.store":
                env |= self.store_env
            with open(self.log, "ab") as fh:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=fh, stderr=fh
                    )
                )

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> None:
        for p in self.procs:
            assert p.poll() is None, self.log.read_text()[-4000:]

    def kill9(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
        self.procs = []

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(60)
        self.procs = []

    def reap(self) -> None:
        """Teardown: kill whatever still runs."""
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []


async def mailctl(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> str:
    """Run ``mailctl``; its stdout (and stderr after a failure when ``ok`` is False)."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "mailctl"), *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if ok:
        assert proc.returncode == 0, err.decode()
        return out.decode()
    assert proc.returncode != 0, out.decode()
    return out.decode() + err.decode()


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


async def until(
    check: Any, what: str, sides: list[Side], timeout: float = 600.0, seen: Any = None
) -> None:
    """Wait for ``check()`` (a guard against a hang, not a timing assertion). ``seen()``,
    when given, says what the check last saw: it goes into the failure, with the tail of
    each side's log."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        for side in sides:
            side.alive()
        if asyncio.get_running_loop().time() >= deadline:
            logs = "\n".join(f"--- {s.node} ---\n{s.log_tail()}" for s in sides)
            last = f" (last seen: {seen()})" if seen is not None else ""
            raise AssertionError(f"never: {what}{last}\n{logs}")
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


async def hand_off(bus: Bus, rcpt: str, subjects: list[str]) -> None:
    """Publish one message per subject to ``MAIL_INBOUND``, as a filter does after its
    screening (PubAck awaited: the filter's 250)."""
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    pubs = []
    for subject in subjects:
        body = (
            f"From: probe@x.example\r\nMessage-ID: <{subject}@x.example>\r\n"
            f"Subject: {subject}\r\n\r\n{os.urandom(100).hex()}\r\n"
        )
        msg = MailMessage(
            id=new_message_id(), mail_from="probe@x.example", recipients=[rcpt], size=0
        )
        pubs.append(publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, body.encode()))
    await asyncio.gather(*pubs)


async def copy_directory(src: Bus, dst: Bus) -> None:
    """The directory of one side on the other (same users, same account ids) — directory
    replication is not part of these tests."""
    for bucket in (names.KV_DIRECTORY, names.KV_CREDENTIALS):  # the records, the hashes
        kv_src = await src.js.key_value(bucket)
        kv_dst = await dst.js.key_value(bucket)
        for key in await kv_src.keys():
            entry = await kv_src.get(key)
            if entry.value is not None:
                await kv_dst.put(key, entry.value)


@dataclass
class Pair:
    """A master and a slave, each with its nats-server running (their processes not
    started yet), a test connection to each, and the account of the one user."""

    a: Side
    b: Side
    bus_a: Bus
    bus_b: Bus
    account: str


@contextlib.asynccontextmanager
async def role_pair(tmp: Path, address: str, password: str) -> AsyncIterator[Pair]:
    """store-a master, store-b slave; ``address`` made on store-a's directory and copied
    to store-b's (same account id). Afterwards every process is killed."""
    a = Side(tmp, "store-a", "store-b", role="master")
    b = Side(tmp, "store-b", "store-a", role="slave")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    bus_a, bus_b = await fresh_bus(a.nats.url), await fresh_bus(b.nats.url)
    try:
        directory = await Directory.open(bus_a.js)
        await directory.add_domain(address.partition("@")[2])
        account = (await directory.add_user(address, password)).account_id
        await directory.close()
        await copy_directory(bus_a, bus_b)
        yield Pair(a, b, bus_a, bus_b, account)
    finally:
        a.reap()
        b.reap()
        await bus_a.close()
        await bus_b.close()
        a.nats.stop()
        b.nats.stop()
