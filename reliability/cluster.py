"""Postern as processes on loopback for the scenarios: nats-server (one node or a
three-node JetStream cluster), the store and the filter, each startable, killable
(SIGKILL) and restartable on the same ports and data, with a fault point armed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mailcore.bus import names
from mailcore.bus.connect import Bus, connect
from mailcore.bus.setup import BusLimits, declare_all, delivery_consumer
from mailcore.directory import AlreadyExists, Directory
from mailcore.tls import ensure_certificate
from services.ctl import daemons

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
ACK_WAIT = 3.0  # seconds before a killed store's unacked messages come back (60 s in prod)
LIMITS = BusLimits(
    inbound_max_bytes=256 * 1024**2,
    outbound_max_bytes=64 * 1024**2,
    bodies_max_bytes=256 * 1024**2,
    mirror_max_bytes=64 * 1024**2,
    dead_max_bytes=64 * 1024**2,
)


def _die_with_parent() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    store_dir: Path
    conf: Path


@dataclass
class Cluster:
    root: Path
    domain: str = "rel.test"
    users: dict[str, str] = field(default_factory=dict)
    nats_nodes: int = 1
    nats_store_dir: Path | None = None  # e.g. a small tmpfs for the NATS disk-full case
    store_data: Path | None = None  # e.g. a small tmpfs for the store disk-full case
    spamd_port: int | None = None
    clamd_port: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    limits: BusLimits = LIMITS
    nats_max_file_store: str | None = None  # e.g. "150MB" on a small file system
    # a fault point armed in a service from its first start, e.g. {"filter": "name@n"}
    fault_points: dict[str, str] = field(default_factory=dict)
    smtp_port: int = field(default_factory=daemons.free_port)
    imap_port: int = field(default_factory=daemons.free_port)
    pop3_port: int = field(default_factory=daemons.free_port)
    submission_port: int = field(default_factory=daemons.free_port)
    store_ops: int = field(default_factory=daemons.free_port)
    filter_ops: int = field(default_factory=daemons.free_port)
    relay_ops: int = field(default_factory=daemons.free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nats: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.users:
            self.users = {f"u{i}@{self.domain}": f"password-u{i}-rel" for i in range(4)}
        for i in range(self.nats_nodes):
            base = (self.nats_store_dir or self.root / "nats") / f"n{i}"
            self.nats.append(
                NatsNode(
                    f"n{i}",
                    daemons.free_port(),
                    daemons.free_port(),
                    base,
                    self.root / "nats-conf" / f"n{i}.conf",
                )
            )

    # --- addresses ---------------------------------------------------------------------
    @property
    def nats_url(self) -> str:
        return ",".join(f"nats://{HOST}:{n.port}" for n in self.nats)

    @property
    def data(self) -> Path:
        return self.store_data or self.root / "store"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def log_tail(self, name: str, lines: int = 25) -> str:
        try:
            return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- processes ---------------------------------------------------------------------
    def env(self, fault: str | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "POSTERN_DATA": str(self.data),
            "POSTERN_NATS_URL": self.nats_url,
            "POSTERN_HOSTNAME": f"mx.{self.domain}",
            "POSTERN_LISTEN_HOST": HOST,
            "POSTERN_LOG_FORMAT": "json",
            "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
            "POSTERN_STORE_OPS_PORT": str(self.store_ops),
            "POSTERN_FILTER_OPS_PORT": str(self.filter_ops),
            "POSTERN_RELAY_OPS_PORT": str(self.relay_ops),
            "POSTERN_SMTP_PORT": str(self.smtp_port),
            "POSTERN_SUBMISSION_PORT": str(self.submission_port),
            "POSTERN_SUBMISSIONS_PORT": "0",
            "POSTERN_IMAP_PORT": str(self.imap_port),
            "POSTERN_IMAPS_PORT": "0",
            "POSTERN_POP3_PORT": str(self.pop3_port),
            "POSTERN_POP3S_PORT": "0",
            "POSTERN_DKIM_VERIFY": "false",
            "POSTERN_STREAM_REPLICAS": str(min(3, self.nats_nodes)),
            "POSTERN_SPAMD_ENABLED": "true" if self.spamd_port else "false",
            "POSTERN_CLAMD_ENABLED": "true" if self.clamd_port else "false",
            "POSTERN_HANDOFF_TIMEOUT": "5",
            "POSTERN_SCAN_TIMEOUT": "5",
            "POSTERN_MAX_CONNECTIONS_PER_IP": "200",
            "POSTERN_MAX_CONNECTIONS_PER_USER": "200",
            "POSTERN_INBOUND_MAX_BYTES": str(self.limits.inbound_max_bytes),
            "POSTERN_OUTBOUND_MAX_BYTES": str(self.limits.outbound_max_bytes),
            "POSTERN_BODIES_MAX_BYTES": str(self.limits.bodies_max_bytes),
            "POSTERN_MIRROR_MAX_BYTES": str(self.limits.mirror_max_bytes),
            "POSTERN_DEAD_MAX_BYTES": str(self.limits.dead_max_bytes),
        }
        env.pop("POSTERN_FAULT_POINT", None)
        if self.spamd_port:
            env |= {"POSTERN_SPAMD_HOST": HOST, "POSTERN_SPAMD_PORT": str(self.spamd_port)}
        if self.clamd_port:
            env |= {"POSTERN_CLAMD_HOST": HOST, "POSTERN_CLAMD_PORT": str(self.clamd_port)}
        env |= self.extra_env
        if fault:
            env["POSTERN_FAULT_POINT"] = fault
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """Start ``name`` (its output appended to its log); it dies with this process."""
        path = self.log(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def alive(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def _write_nats_conf(self, node: NatsNode, clustered: bool = True) -> None:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listen: {HOST}:{node.port}",
            f"server_name: {node.name}",
            "max_payload: 1MB",
            "jetstream {",
            f'  store_dir: "{node.store_dir.resolve()}"',
            "  sync_interval: always",
            "  max_memory_store: 64MB",
            *(
                [f"  max_file_store: {self.nats_max_file_store}"]
                if self.nats_max_file_store
                else []
            ),
            "}",
        ]
        if clustered and len(self.nats) > 1:
            routes = ", ".join(f"nats://{HOST}:{n.cluster_port}" for n in self.nats)
            lines += [
                "cluster {",
                "  name: reliability",
                f"  listen: {HOST}:{node.cluster_port}",
                f"  routes: [{routes}]",
                "}",
            ]
        node.conf.parent.mkdir(parents=True, exist_ok=True)
        node.conf.write_text("\n".join(lines) + "\n")

    def start_nats(self, index: int | None = None) -> None:
        nodes = self.nats if index is None else [self.nats[index]]
        for node in nodes:
            self._write_nats_conf(node)
            self.spawn(f"nats-{node.name}", daemons.nats_command(node.conf), dict(os.environ))
        for node in nodes:
            name = f"nats-{node.name}"
            up = daemons.wait_for_port(HOST, node.port, START_TIMEOUT, lambda n=name: self.alive(n))
            if not up:
                raise RuntimeError(f"{name} did not start:\n{self.log_tail(name)}")

    def start_standalone_nats(self, node: NatsNode) -> None:
        """Another single nats-server, ``nats-<node.name>`` (e.g. a mirror's second site):
        the same settings as the cluster's, in no cluster with them."""
        self._write_nats_conf(node, clustered=False)
        name = f"nats-{node.name}"
        self.spawn(name, daemons.nats_command(node.conf), dict(os.environ))
        if not daemons.wait_for_port(HOST, node.port, START_TIMEOUT, lambda: self.alive(name)):
            raise RuntimeError(f"{name} did not start:\n{self.log_tail(name)}")

    def start_service(self, name: str, fault: str | None = None, wait: bool = True) -> None:
        module = {"relay": "services.filter.relay"}.get(name, f"services.{name}")
        self.spawn(name, [sys.executable, "-m", module], self.env(fault))
        if wait:
            self.wait_healthy(name)

    def wait_healthy(self, name: str, port: int | None = None) -> None:
        """Until ``name`` answers /healthz on ``port`` (default: its ops port here)."""
        if port is None:
            port = {"store": self.store_ops, "relay": self.relay_ops}.get(name, self.filter_ops)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive(name):
                p = self.procs.get(name)
                code = p.returncode if p is not None else None
                raise RuntimeError(f"{name} exited (status {code}):\n{self.log_tail(name)}")
            if _healthy(port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not healthy:\n{self.log_tail(name)}")

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        p = self.procs.pop(name, None)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()

    def signal(self, name: str, sig: int) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            p.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM every service at once (relay, webmail too), then the nats-servers: the
        checker has read everything by now, so nothing waits on one after another."""
        services = [n for n in self.procs if not n.startswith("nats-")]
        for group in (services, [n for n in self.procs if n.startswith("nats-")]):
            procs = [self.procs.pop(name) for name in group]
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGCONT)
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for p in procs:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    async def start(self) -> None:
        """NATS, accounts, store, filter: the cluster ready for load."""
        self.data.mkdir(parents=True, exist_ok=True)
        ensure_certificate(self.data / "tls" / "cert.pem", self.data / "tls" / "key.pem", HOST)
        await asyncio.to_thread(self.start_nats)
        await self.provision()
        # both at once: the filter needs the streams (provisioned), not the store
        for name in ("store", "filter"):
            self.start_service(name, self.fault_points.get(name), wait=False)
        await asyncio.gather(
            asyncio.to_thread(self.wait_healthy, "store"),
            asyncio.to_thread(self.wait_healthy, "filter"),
        )
        await self.shorten_ack_wait()

    # --- bus ----------------------------------------------------------------------------
    async def bus(self) -> Bus:
        return await connect(self.nats_url, "reliability", wait=30)

    async def provision(self) -> None:
        bus = await self.bus()
        try:
            await self._jetstream_ready(bus)
            limits = dataclasses.replace(self.limits, replicas=min(3, self.nats_nodes))
            await declare_all(bus.js, limits)
            directory = await Directory.open(bus.js, watch=False)
            if directory.domain(self.domain) is None:
                await directory.add_domain(self.domain)
            for address, password in self.users.items():
                with contextlib.suppress(AlreadyExists):
                    await directory.add_user(address, password)
        finally:
            await bus.close()

    async def _jetstream_ready(self, bus: Bus, timeout: float = 60.0) -> None:
        """A fresh cluster answers JetStream requests once it has elected a meta leader."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await bus.js.account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def shorten_ack_wait(self) -> None:
        """The store declares its consumer with a 60 s ack wait; make it seconds so what a
        killed store fetched but never acked comes back within a scenario."""
        bus = await self.bus()
        try:
            config = delivery_consumer(LIMITS)
            config.ack_wait, config.backoff = ACK_WAIT, None
            await bus.js.add_consumer(names.STREAM_INBOUND, config)
        finally:
            await bus.close()

    async def backlog(self) -> int:
        """Messages the store has not acked yet (pending + in flight)."""
        bus = await self.bus()
        try:
            info = await bus.js.consumer_info(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
            return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        finally:
            await bus.close()

    async def drained(self, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await self.backlog() == 0:
                    return True
            await asyncio.sleep(0.5)
        return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False
