"""compose's three-node NATS cluster (compose.ha.yaml, issue 18) without Docker: the certs
job's files (``mailctl nats-auth`` with compose's ``--hosts``), compose/nats/cluster-*.conf
changed only where a container differs from a process on loopback (addresses and ports,
the data directory, the names Docker's DNS resolves), three nats-server processes.

Routes are TLS, the peer's certificate verified against the cluster CA: the cluster forms,
an R3 stream takes a message every node stores, the route port says nothing to a plaintext
peer, and a node presenting a route certificate another CA signed is refused as a route.
When a node dies, natsrun's watch on a survivor leaves it alone while the streams elect
(compose/tests/test_ha.py, which kills a node, accepted no mail when it did not)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailcore.bus import mirror, mirror_buckets, names, roles
from mailcore.bus.connect import Bus, connect
from mailcore.bus.credentials import NatsAuth, client_tls
from mailcore.bus.probe import can_store
from mailcore.bus.setup import ensure_stream, stream_configs
from services.ctl import daemons, natsauth
from services.ctl.natswatch import NatsWatch
from services.mirror.sink import STREAM_CONFLICTS, declare_conflicts
from tests.conftest import TEST_LIMITS
from tests.support.daemons import Daemon

COMPOSE = Path(__file__).resolve().parents[3] / "compose"
MAILCTL = str(Path(sys.executable).parent / "mailctl")
NODES = {"nats": "cluster-1.conf", "nats-2": "cluster-2.conf", "nats-3": "cluster-3.conf"}
ROGUE = "nats-rogue"
WAIT = 90.0  # the longest any one condition may take to come true on a loaded machine


class Node(Daemon):
    """One cluster node: nats-server on the configuration written for it."""

    name = "nats"

    def __init__(self, workdir: Path, server_name: str, conf: Path) -> None:
        super().__init__(workdir)
        self.server_name = server_name
        self.conf = conf
        self.http = daemons.free_port()
        self.route = daemons.free_port()

    def command(self) -> list[str]:
        return daemons.nats_command(self.conf)

    def monitor(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as r:
            doc: dict[str, Any] = json.load(r)
        return doc

    def peers(self) -> set[str]:
        return {r.get("remote_name", "") for r in self.monitor("/routez")["routes"]}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _certs_hosts() -> str:
    """The ``--hosts`` compose's certs job passes: the names the certificates carry."""
    certs = yaml.safe_load((COMPOSE / "compose.yaml").read_text())["services"]["certs"]
    found = re.search(r"--hosts (\S+)", " ".join(certs["command"]))
    assert found is not None
    return found.group(1)


def _certs_job(conf: Path, secrets: Path) -> None:
    args = ["nats-auth", "--conf", str(conf), "--secrets", str(secrets)]
    done = subprocess.run(
        [MAILCTL, *args, "--hosts", _certs_hosts()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"compose's cluster configuration no longer has {old!r}"
    return text.replace(old, new)


def _loopback_conf(template: str, node: Node, everyone: dict[str, Node]) -> str:
    """compose's configuration of one node, as a process on loopback: every route still
    dialled by a name the route certificate carries (``localhost`` instead of Docker's)."""
    text = _replace(template, "listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{node.port}")
    text = _replace(text, "http: 0.0.0.0:8222", f"http: 127.0.0.1:{node.http}")
    text = _replace(text, "listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{node.route}")
    text = _replace(text, "store_dir: /var/lib/postern/nats", f'store_dir: "{node.workdir / "js"}"')
    text = re.sub(r"^server_name: .*$", f"server_name: {node.server_name}", text, flags=re.M)
    for name, peer in everyone.items():
        text = _replace(text, f"nats-route://{name}:6222", f"nats-route://localhost:{peer.route}")
    return text


def _auth(secrets: Path, user: str) -> NatsAuth:
    own = secrets / user
    password = (own / "password").read_text().strip()
    return NatsAuth(user, password, client_tls(own / "ca.pem", None, None))


async def _until(what: str, check: Callable[[], Awaitable[bool]], seen: object = None) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT:.0f} s: {what}" + (f" (seen: {seen})" if seen else ""))
        await asyncio.sleep(0.2)


def _plain_route_peer(port: int) -> bytes:
    """What a route port says to a peer that never starts TLS (a plain route sends its
    INFO first; a TLS-only one waits for a ClientHello and drops this)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[dict[str, Node], Path]]:
    # etc: the image's /etc/postern/nats, with the certs job's output (the nats-auth
    # volume) in auth/, where the configurations' include lines find it
    etc, secrets = tmp_path / "etc", tmp_path / "secrets"
    _certs_job(etc / "auth", secrets)
    nodes = {name: Node(tmp_path / name, name, etc / conf) for name, conf in NODES.items()}
    for name, node in nodes.items():
        template = (COMPOSE / "nats" / NODES[name]).read_text()
        node.conf.write_text(_loopback_conf(template, node, nodes))
    try:
        for node in nodes.values():
            node.start(timeout=WAIT)
        yield nodes, secrets
    finally:
        for node in nodes.values():
            node.stop()


async def test_cluster_forms_over_verified_tls_routes_and_refuses_a_stranger(
    cluster: tuple[dict[str, Node], Path], tmp_path: Path
) -> None:
    nodes, secrets = cluster
    # every node routes to both others, and every route port is TLS only
    for name, node in nodes.items():
        others = set(nodes) - {name}
        await _until(f"{name} routes to {others}", partial(_has, node, others))
    for node in nodes.values():
        answer = await asyncio.to_thread(_plain_route_peer, node.route)
        assert b"INFO" not in answer and b"PONG" not in answer
        assert "first record does not look like a TLS handshake" in node.log()

    # an R3 stream: a message handed to one node, acked, stored by all three
    url = {name: f"nats://127.0.0.1:{node.port}" for name, node in nodes.items()}
    admin = await connect(url["nats"], "test-admin", auth=_auth(secrets, "mailctl"), wait=WAIT)
    filt: Bus | None = None
    try:
        config = next(
            c
            for c in stream_configs(dataclasses.replace(TEST_LIMITS, replicas=3))
            if c.name == names.STREAM_INBOUND
        )
        await _until("the R3 stream is created", partial(_created, admin, config))
        filt = await connect(url["nats-2"], "test-filter", auth=_auth(secrets, "filter"), wait=WAIT)
        ack = await filt.js.publish(names.SUBJECT_INBOUND, b"over tls routes")
        assert (ack.stream, ack.seq) == (names.STREAM_INBOUND, 1)
        info = await admin.js.stream_info(names.STREAM_INBOUND)
        assert info.config.num_replicas == 3 and info.cluster is not None
        assert {info.cluster.leader} | {r.name for r in info.cluster.replicas or []} == set(nodes)
        for name, node in nodes.items():
            await _until(f"{name} stores the message", partial(_stored, node, 1))
        # the mirror's streams and buckets, made on first use, are as strong as the mail
        await roles.bucket(admin.js)
        await mirror.status_bucket(admin.js)
        await mirror_buckets.bodies(admin.js)
        await mirror.declare(admin.js, "store-b", 16 * 1024**2)
        await declare_conflicts(admin.js)
        for made in (
            "KV_" + roles.KV_ROLE,
            "KV_" + mirror.KV_STATUS,
            "OBJ_" + names.OBJ_MIRROR_BODIES,
            mirror.stream_name("store-b"),
            STREAM_CONFLICTS,
        ):
            assert (await admin.js.stream_info(made)).config.num_replicas == 3, made
    finally:
        if filt is not None:
            await filt.close()
        await admin.close()

    # a node with a route certificate another CA signed (the same CA name, the cluster's
    # real CA to check the nodes by) dials all three and is refused by each
    rogue_etc = tmp_path / "rogue-etc"
    natsauth.write_deployment(rogue_etc / "auth", tmp_path / "rogue-secrets", ["localhost"])
    real_ca = secrets.parent / "etc" / "auth" / "tls" / "cluster-ca.pem"
    assert (rogue_etc / "auth/tls/cluster-ca.pem").read_bytes() != real_ca.read_bytes()
    shutil.copy(real_ca, rogue_etc / "auth" / "tls" / "cluster-ca.pem")
    rogue = Node(tmp_path / ROGUE, ROGUE, rogue_etc / "cluster-3.conf")
    template = (COMPOSE / "nats" / NODES["nats-3"]).read_text()
    rogue.conf.write_text(_loopback_conf(template, rogue, nodes))
    rogue.start(timeout=WAIT)
    try:
        for name, node in nodes.items():
            await _until(f"{name} refuses the stranger's route", partial(_refused, node))
        assert rogue.monitor("/routez")["num_routes"] == 0
        for node in nodes.values():
            assert ROGUE not in node.peers() and node.peers() == set(nodes) - {node.server_name}
    finally:
        rogue.stop()


async def test_watch_leaves_a_survivor_alone_while_the_streams_elect(
    cluster: tuple[dict[str, Node], Path],
) -> None:
    """The probe stream's leader dies: a survivor's write probe fails until the two left
    elect a new one. Its watch (services.ctl.natsrun's) must neither reload nor restart
    it meanwhile, the disk having had room all along: each restart took a vote from the
    other survivor, whose watch then restarted it in turn, and no quorum ever held."""
    nodes, secrets = cluster
    for name, node in nodes.items():
        others = set(nodes) - {name}
        await _until(f"{name} routes to {others}", partial(_has, node, others))
    url = {name: f"nats://127.0.0.1:{node.port}" for name, node in nodes.items()}
    admin = await connect(url["nats"], "test-admin", auth=_auth(secrets, "mailctl"), wait=WAIT)
    config = next(
        c
        for c in stream_configs(dataclasses.replace(TEST_LIMITS, replicas=3))
        if c.name == names.STREAM_PROBE
    )
    try:
        await _until("the R3 probe stream is created", partial(_created, admin, config))
        await _until("the probe stores", partial(can_store, admin.js))
        info = await admin.js.stream_info(names.STREAM_PROBE)
        assert info.cluster is not None and info.cluster.leader in nodes
        leader = info.cluster.leader
    finally:
        await admin.close()
    survivor = nodes[next(name for name in nodes if name != leader)]
    bus = await connect(url[survivor.server_name], "test-watch", auth=_auth(secrets, "mailctl"))

    async def restart() -> None:
        await asyncio.to_thread(survivor.stop)
        await asyncio.to_thread(survivor.start, WAIT)

    said: list[str] = []
    watch = NatsWatch(
        bus.js,
        survivor.workdir,
        pid=lambda: survivor.proc.pid if survivor.proc else None,
        restart=restart,
        echo=said.append,
        interval=0.2,
        grace=0.2,  # far shorter than an election: a watch that acts on a failed probe does
        min_free=1,
    )
    stopping = asyncio.Event()
    watching = asyncio.create_task(watch.run(stopping))
    try:
        nodes[leader].kill()  # no leadership handed over, as docker kill in test_ha

        async def stored_again() -> bool:
            return "JetStream stores again" in said

        await _until("the survivors store again", stored_again, said)
        assert said[0].startswith("!! JetStream stores nothing")
        assert (watch.reloads, watch.restarts) == (0, 0), said
    finally:
        stopping.set()
        await asyncio.wait_for(watching, WAIT)
        await bus.close()


async def _has(node: Node, peers: set[str]) -> bool:
    return await asyncio.to_thread(node.peers) == peers


async def _created(bus: Bus, config: Any) -> bool:
    try:
        await ensure_stream(bus.js, config)
    except Exception:  # no meta leader yet, or not all three peers known to it
        return False
    return True


async def _stored(node: Node, messages: int) -> bool:
    doc = await asyncio.to_thread(node.monitor, "/jsz?streams=true")
    for account in doc.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            if stream["name"] == names.STREAM_INBOUND:
                return bool(stream["state"]["messages"] == messages)
    return False


async def _refused(node: Node) -> bool:
    return "TLS route handshake error" in node.log() and "unknown authority" in node.log()
