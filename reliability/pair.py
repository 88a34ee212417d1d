"""A mirrored pair for the mirror scenarios (docs/mirror.md), as processes on loopback.

Side A is the scenario's :class:`~reliability.cluster.Cluster`: its nats-server, its store
(``store``, node ``store-a``, the master: it takes the filter's inbound mail) and the
filter. Side B is a second site: its own nats-server (``nats-b``), its own store
(``store-b``, the slave) on its own data directory and IMAP/POP3 ports, as
tests/services/mirror/conftest.py builds one. Each store has its mirror process
(``mirror-a``, ``mirror-b``), and each mirror reaches the *peer's* NATS through a
:class:`~reliability.linkproxy.LinkProxy`, so a scenario can cut that link (or make it
flap) without touching a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.connect import Bus, connect
from mailcore.bus.setup import declare_all
from mailcore.directory import Directory
from mailcore.mailstore import store_root
from reliability.cluster import HOST, Cluster, NatsNode
from reliability.linkproxy import LinkProxy
from services.ctl import daemons

NODE_A, NODE_B = "store-a", "store-b"
STREAM_MAX_BYTES = 128 * 1024**2  # each MIRROR_TO_<PEER> queue
MIRRORS = {"mirror-a": NODE_A, "mirror-b": NODE_B}


def side_a_env() -> dict[str, str]:
    """Settings side A's processes (the cluster's) add for the pair."""
    return {
        "POSTERN_MIRROR_ROLE": "master",
        "POSTERN_MIRROR_NODE": NODE_A,
        "POSTERN_MIRROR_PEER": NODE_B,
        "POSTERN_MIRROR_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES),
    }


_PROGRESS = re.compile(r"^resync: (\d+)/(\d+) messages")


def resync_progress(line: str) -> tuple[int, int] | None:
    """``(done, total)`` of one of ``mailctl mirror resync``'s plain progress lines."""
    m = _PROGRESS.match(line)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass
class MirrorPair:
    c: Cluster
    imap_b: int = field(default_factory=daemons.free_port)
    pop3_b: int = field(default_factory=daemons.free_port)
    ops: dict[str, int] = field(default_factory=dict)  # ops ports of store-b and the mirrors
    links: dict[str, LinkProxy] = field(default_factory=dict)  # mirror -> its peer link
    accounts: dict[str, str] = field(default_factory=dict)  # address -> account id
    nats_b: NatsNode = field(init=False)

    def __post_init__(self) -> None:
        root = self.c.root
        ports = daemons.free_port(), daemons.free_port()
        self.nats_b = NatsNode("b", *ports, root / "nats-b", root / "nats-conf" / "b.conf")
        for name in ("store-b", *MIRRORS):
            self.ops.setdefault(name, daemons.free_port())

    # --- addresses ------------------------------------------------------------------------
    @property
    def data_b(self) -> Path:
        return self.c.root / NODE_B

    @property
    def url_a(self) -> str:
        return self.c.nats_url

    @property
    def url_b(self) -> str:
        return f"nats://{HOST}:{self.nats_b.port}"

    def imap(self) -> list[tuple[str, int]]:
        """Both stores' IMAP endpoints, by node name."""
        return [(NODE_A, self.c.imap_port), (NODE_B, self.imap_b)]

    # --- processes ------------------------------------------------------------------------
    def store_b_env(self) -> dict[str, str]:
        return self.c.env() | {
            "POSTERN_DATA": str(self.data_b),
            "POSTERN_NATS_URL": self.url_b,
            "POSTERN_IMAP_PORT": str(self.imap_b),
            "POSTERN_POP3_PORT": str(self.pop3_b),
            "POSTERN_STORE_OPS_PORT": str(self.ops["store-b"]),
            "POSTERN_MIRROR_ROLE": "slave",
            "POSTERN_MIRROR_NODE": NODE_B,
            "POSTERN_MIRROR_PEER": NODE_A,
        }

    def mirror_env(self, name: str) -> dict[str, str]:
        """``mirror-a`` beside store A, ``mirror-b`` beside store B; each reaches the peer's
        NATS through its link (when the link exists: before :meth:`start`, directly)."""
        a = MIRRORS[name] == NODE_A
        link = self.links.get(name)
        peer_url = link.url if link else (self.url_b if a else self.url_a)
        return self.c.env() | {
            "POSTERN_DATA": str(self.c.data if a else self.data_b),
            "POSTERN_NATS_URL": self.url_a if a else self.url_b,
            "POSTERN_MIRROR_NODE": NODE_A if a else NODE_B,
            "POSTERN_MIRROR_PEER": NODE_B if a else NODE_A,
            "POSTERN_PEER_NATS_URL": peer_url,
            "POSTERN_MIRROR_OPS_PORT": str(self.ops[name]),
            "POSTERN_MIRROR_STREAM_MAX_BYTES": str(STREAM_MAX_BYTES),
        }

    def start_process(self, name: str) -> None:
        """Start ``store``, ``store-b``, ``mirror-a`` or ``mirror-b`` and wait until it is
        healthy (blocking: call it in a thread)."""
        if name == "store":
            self.c.start_service("store")
            return
        env = self.store_b_env() if name == "store-b" else self.mirror_env(name)
        module = "services.store" if name == "store-b" else "services.mirror"
        self.c.spawn(name, [sys.executable, "-m", module], env)
        self.c.wait_healthy(name, self.ops[name])

    async def start_side(self, side: str) -> None:
        """Store then mirror of side ``a`` or ``b``."""
        store = "store" if side == "a" else "store-b"
        await asyncio.to_thread(self.start_process, store)
        if store == "store":
            await self.c.shorten_ack_wait()
        await asyncio.to_thread(self.start_process, f"mirror-{side}")

    def kill_side(self, side: str) -> None:
        """SIGKILL the side's store and mirror (its nats-server stays)."""
        for name in ("store", "mirror-a") if side == "a" else ("store-b", "mirror-b"):
            self.c.kill(name)

    def wipe_b(self) -> None:
        """Store B's mail gone (a new disk): the directory and queues on its NATS stay."""
        shutil.rmtree(store_root(self.data_b), ignore_errors=True)

    async def start(self) -> None:
        """Side B and both mirrors beside the running cluster (side A); then the accounts
        opened on A and replicated to B, so an IMAP login on B finds them (a login on a
        store that holds nothing of an account would make its own INBOX)."""
        await asyncio.to_thread(self.c.start_standalone_nats, self.nats_b)
        await self._provision_b()
        for name, port in (("mirror-a", self.nats_b.port), ("mirror-b", self.c.nats[0].port)):
            link = LinkProxy(port, HOST)
            await link.start()
            self.links[name] = link
        await asyncio.to_thread(self.start_process, "store-b")
        for name in MIRRORS:
            await asyncio.to_thread(self.start_process, name)

    async def stop(self) -> None:
        for link in self.links.values():
            await link.stop()

    async def _provision_b(self) -> None:
        """B's streams and buckets, and A's directory on B (same users, same account ids)."""
        src = await self.c.bus()
        dst = await connect(self.url_b, "reliability", wait=30)
        try:
            await declare_all(dst.js, self.c.limits)
            kv_src = await src.js.key_value(names.KV_DIRECTORY)
            kv_dst = await dst.js.key_value(names.KV_DIRECTORY)
            for key in await kv_src.keys():
                entry = await kv_src.get(key)
                if entry.value is not None:
                    await kv_dst.put(key, entry.value)
            directory = await Directory.open(src.js, watch=False)
            for address in self.c.users:
                user = directory.user(address)
                if user is None:
                    raise RuntimeError(f"{address} not in the directory")
                self.accounts[address] = user.account_id
        finally:
            await src.close()
            await dst.close()

    # --- replication state ------------------------------------------------------------------
    async def buses(self) -> tuple[Bus, Bus]:
        a = await self.c.bus()
        try:
            b = await connect(self.url_b, "reliability", wait=30)
        except BaseException:
            await a.close()
            raise
        return a, b

    async def queued(self, a: Bus, b: Bus) -> tuple[int, int]:
        """Records waiting in ``MIRROR_TO_STORE_B`` (on A) and ``MIRROR_TO_STORE_A`` (on B)."""
        return (await queue.queue(a.js, NODE_B))[0], (await queue.queue(b.js, NODE_A))[0]

    async def settled(self, a: Bus, b: Bus, *, opened: bool = False) -> bool:
        """Nothing queued either way and every account's mailbox digests equal; with
        ``opened``, every account also holds mailboxes (it was opened on a store)."""
        try:
            if await self.queued(a, b) != (0, 0):
                return False
            for account in self.accounts.values():
                mine = await digests(a, account)
                if (opened and not mine) or mine != await digests(b, account):
                    return False
        except Exception:  # a store starting, a request timing out
            return False
        return True

    async def wait_settled(self, timeout: float, *, opened: bool = False) -> bool:
        a, b = await self.buses()
        try:
            deadline = time.monotonic() + timeout
            while not await self.settled(a, b, opened=opened):
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.5)
            return True
        finally:
            await a.close()
            await b.close()

    async def status(self) -> list[str]:
        """Each mirror's last status record (what ``mailctl mirror status`` shows)."""
        a, b = await self.buses()
        out = []
        try:
            for bus, node, peer in ((a, NODE_A, NODE_B), (b, NODE_B, NODE_A)):
                with contextlib.suppress(Exception):
                    st = await queue.read_status(bus.js, peer)
                    out.append(
                        f"{node}->{peer}: sent {st.get('sent')}, applied here "
                        f"{st.get('applied')}, conflicts {st.get('conflicts')} kept, "
                        f"{st.get('resolved')} resolved, last error {st.get('last_error')}"
                    )
        finally:
            await a.close()
            await b.close()
        return out

    def resync_argv(self) -> list[str]:
        """``mailctl mirror resync`` from A (the truth) to B, both NATS directly."""
        mailctl = str(Path(sys.executable).parent / "mailctl")
        return [
            mailctl, "mirror", "resync", "--nats", self.url_a, "--peer-nats", self.url_b,
            "--node", NODE_A, "--peer", NODE_B,
        ]  # fmt: skip


async def request(bus: Bus, op: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await bus.nc.request(names.SUBJECT_REPLICA + op, json.dumps(body).encode(), 30)
    value: dict[str, Any] = json.loads(reply.data)
    if "error" in value:
        raise RuntimeError(str(value["error"]))
    return value


async def digests(bus: Bus, account: str) -> dict[str, tuple[int, str]]:
    """Per mailbox name: (id, digest), as the store on ``bus`` reports them."""
    boxes: Sequence[dict[str, Any]] = (await request(bus, "mailboxes", {"account": account}))[
        "mailboxes"
    ]
    out = {}
    for box in boxes:
        d = await request(bus, "digest", {"account": account, "mailbox_id": box["id"]})
        out[str(box["name"])] = (int(box["id"]), str(d["digest"]))
    return out


__all__ = [
    "MIRRORS",
    "NODE_A",
    "NODE_B",
    "MirrorPair",
    "digests",
    "resync_progress",
    "side_a_env",
]
