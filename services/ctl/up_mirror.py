"""``mailctl up --mirror``: the mirrored pair on this machine, without Docker.

Beside the cluster of ``mailctl up`` (store ``store-a``, the master, on the data
directory and NATS of the cluster) it runs a second store ``store-b`` (the slave) on its
own data directory ``<data>/store-b`` and its own nats-server (``POSTERN_MIRROR_NATS_PORT``,
default 4223), serving IMAP on ``POSTERN_MIRROR_IMAP_PORT`` (3143) and POP3 on
``POSTERN_MIRROR_POP3_PORT`` (3110), and the two mirror processes (``mirror-a``,
``mirror-b``), each its own supervised child. The directory is copied to the second
NATS at start so the same logins work on both stores. ``<data>/mirror/pair.json``
lets ``mailctl status``, ``mailctl mirror status|promote`` and ``mailctl probe`` from the
same environment find both stores.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mailcore.bus import mirror_directory
from mailcore.bus.connect import connect
from mailcore.bus.credentials import NatsAuth
from mailcore.bus.setup import BusLimits, declare_all
from mailcore.config import ClusterSettings, StoreSettings
from services.ctl import daemons, pair
from services.ctl.supervisor import ChildSpec, Supervisor

NODE_A, NODE_B = "store-a", "store-b"


class UpCluster(Protocol):
    cluster: ClusterSettings
    store: StoreSettings
    data: Path

    @property
    def nats_url(self) -> str: ...


def data_b(c: UpCluster) -> Path:
    return c.data / NODE_B


def nats_url_b(c: UpCluster) -> str:
    return f"nats://127.0.0.1:{c.cluster.mirror_nats_port}"


def share_budget(streams: dict[str, int]) -> dict[str, str]:
    """Half of the mirror's stream budget for each peer queue ``MIRROR_TO_<PEER>``: JetStream
    refuses a stream whose ``max_bytes`` does not fit in what is left of its budget."""
    half = max(1024 * 1024, streams.get("mirror_max_bytes", 2 * 1024**3) // 2)
    streams["mirror_max_bytes"] = half
    return {"POSTERN_MIRROR_STREAM_MAX_BYTES": str(half)}


def store_a_env(env: dict[str, str]) -> dict[str, str]:
    """The first store: the master (until ``mailctl mirror promote``)."""
    return env | {"POSTERN_MIRROR_ROLE": "master"}


async def start_nats_b(sup: Supervisor, c: UpCluster, max_file_store: int, extra: str = "") -> None:
    """The second nats-server; ``extra``: the same users and TLS as the first one's."""
    port = c.cluster.mirror_nats_port
    if daemons.port_open("127.0.0.1", port):
        raise RuntimeError(f"port {port} is taken (set POSTERN_MIRROR_NATS_PORT)")
    conf = daemons.write_nats_config(
        data_b(c) / "nats" / "nats.conf",
        host="127.0.0.1",
        port=port,
        store_dir=data_b(c) / "nats" / "jetstream",
        max_file_store=max_file_store,
        extra=extra,
    )
    spec = ChildSpec("nats-b", daemons.nats_command(conf), c.data / "logs" / "nats-b.log")
    await sup.start(spec)
    ok = await asyncio.to_thread(
        daemons.wait_for_port, "127.0.0.1", port, 15, lambda: sup.alive("nats-b")
    )
    if not ok:
        raise RuntimeError(f"the second nats-server did not start (see {spec.log_path})")


async def copy_directory(c: UpCluster, limits: BusLimits, auth: NatsAuth | None = None) -> None:
    """Domains, users and aliases, and the password hashes, of the first NATS on the
    second (same account ids, same logins); ``auth``: the administrator's credentials on
    both servers."""
    src = await connect(c.nats_url, "mailctl-mirror", auth=auth, wait=15)
    dst = await connect(nats_url_b(c), "mailctl-mirror", auth=auth, wait=15)
    try:
        await declare_all(dst.js, limits)
        for bucket in mirror_directory.BUCKETS:
            kv_src = await src.js.key_value(bucket)
            kv_dst = await dst.js.key_value(bucket)
            try:
                keys = await kv_src.keys()
            except Exception:  # nats-py: no keys at all
                keys = []
            for key in keys:
                entry = await kv_src.get(key)
                if entry.value is not None:
                    await kv_dst.put(key, entry.value)
    finally:
        await src.close()
        await dst.close()


def _child(name: str, module: str, c: UpCluster, env: dict[str, str]) -> ChildSpec:
    return ChildSpec(
        name=name,
        argv=[sys.executable, "-m", module],
        log_path=c.data / "logs" / f"{name}.log",
        env=env,
    )


async def start_pair(
    sup: Supervisor,
    c: UpCluster,
    env: dict[str, str],
    nats_env: Callable[[str], dict[str, str]] = lambda module: {},
) -> dict[str, int]:
    """The second store and both mirror processes; their ops ports (for /healthz).
    ``nats_env(module)``: the NATS user and TLS settings of a child (the same users on both
    servers); a mirror uses its own user on the peer's server too."""
    cl = c.cluster
    store_b = (
        env
        | nats_env("services.store")
        | {
            "POSTERN_DATA": str(data_b(c)),
            "POSTERN_NATS_URL": nats_url_b(c),
            "POSTERN_IMAP_PORT": str(cl.mirror_imap_port),
            "POSTERN_IMAPS_PORT": str(cl.mirror_imaps_port),
            "POSTERN_POP3_PORT": str(cl.mirror_pop3_port),
            "POSTERN_POP3S_PORT": str(cl.mirror_pop3s_port),
            "POSTERN_STORE_OPS_PORT": str(cl.mirror_store_ops_port),
            "POSTERN_OPS_PORT": str(cl.mirror_store_ops_port),
            "POSTERN_MIRROR_ROLE": "slave",
        }
    )
    await sup.start(_child(NODE_B, "services.store", c, store_b))
    ports = {NODE_B: cl.mirror_store_ops_port}
    sides = (
        (NODE_A, NODE_B, c.nats_url, nats_url_b(c)),
        (NODE_B, NODE_A, nats_url_b(c), c.nats_url),
    )
    for node, peer, own_url, peer_url in sides:
        name = "mirror-" + node.removeprefix("store-")
        ops = daemons.free_port()
        own = nats_env("services.mirror")
        peer_auth = {}
        if "POSTERN_NATS_USER" in own:
            peer_auth["POSTERN_PEER_NATS_USER"] = own["POSTERN_NATS_USER"]
            peer_auth["POSTERN_PEER_NATS_PASSWORD_FILE"] = own["POSTERN_NATS_PASSWORD_FILE"]
        if "POSTERN_NATS_TLS_CA" in own:
            peer_auth["POSTERN_PEER_TLS_CA"] = own["POSTERN_NATS_TLS_CA"]
        mirror_env = (
            env
            | own
            | peer_auth
            | {
                "POSTERN_NATS_URL": own_url,
                "POSTERN_MIRROR_NODE": node,
                "POSTERN_MIRROR_PEER": peer,
                "POSTERN_PEER_NATS_URL": peer_url,
                "POSTERN_MIRROR_OPS_PORT": str(ops),
                "POSTERN_OPS_PORT": str(ops),
            }
        )
        if node == NODE_B:
            mirror_env["POSTERN_DATA"] = str(data_b(c))
        await sup.start(_child(name, "services.mirror", c, mirror_env))
        ports[name] = ops
    return ports


def write_pair(c: UpCluster) -> None:
    s, cl = c.store, c.cluster
    pair.write(
        c.data,
        [
            pair.PairStore(
                NODE_A, c.nats_url, s.imap_port, s.pop3_port, f"http://127.0.0.1:{s.ops_port}"
            ),
            pair.PairStore(
                NODE_B,
                nats_url_b(c),
                cl.mirror_imap_port,
                cl.mirror_pop3_port,
                f"http://127.0.0.1:{cl.mirror_store_ops_port}",
            ),
        ],
    )


def banner_lines(c: UpCluster, host: str) -> list[str]:
    cl = c.cluster
    return [
        "",
        f"Mirrored pair (docs/mirror.md): {NODE_A} is master (takes inbound mail), "
        f"{NODE_B} slave; both serve IMAP and POP3",
        f"  {NODE_A}  IMAP {host}:{c.store.imap_port}  POP3 {host}:{c.store.pop3_port}  "
        f"NATS {c.nats_url}",
        f"  {NODE_B}  IMAP {host}:{cl.mirror_imap_port}  POP3 {host}:{cl.mirror_pop3_port}  "
        f"IMAPS {host}:{cl.mirror_imaps_port}  POP3S {host}:{cl.mirror_pop3s_port}  "
        f"NATS {nats_url_b(c)}",
        f"  {NODE_B} data {data_b(c)}",
        "  mailctl mirror status · mailctl mirror promote --nats <store's NATS> · mailctl probe",
    ]


def summary(ports: dict[str, Any]) -> str:
    return ", ".join(f"{n} :{p}" for n, p in sorted(ports.items()))


__all__ = [
    "banner_lines",
    "copy_directory",
    "data_b",
    "nats_url_b",
    "start_nats_b",
    "start_pair",
    "store_a_env",
    "write_pair",
]
