"""Compose's NATS security without Docker (services.ctl.natsauth, issue 18): the files the
certs job writes (``mailctl nats-auth``) included by a nats.conf like compose's, the nats
runner declaring the streams as the administrator (``--declare``), services connecting as
their own users with their own password file and the CA, over TLS only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from mailcore.bus import credentials, names
from mailcore.bus import mirror as queue
from mailcore.bus.connect import connect
from mailcore.bus.permissions import MIRROR_NODES
from mailcore.bus.setup import await_declared
from mailcore.config import FilterSettings, StoreSettings
from services.ctl import daemons
from services.ctl.natsrun import NatsRunner
from tests.conftest import TEST_LIMITS
from tests.support.securenats import SecureNats, plain_session

MAILCTL = str(Path(sys.executable).parent / "mailctl")
USERS = ["mailctl", "filter", "relay", "store", "webmail", "mirror"]


def _certs_job(root: Path) -> None:
    done = subprocess.run(
        [
            MAILCTL,
            "nats-auth",
            "--conf",
            str(root / "conf" / "auth"),
            "--secrets",
            str(root / "secrets"),
            "--hosts",
            "nats,localhost",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _compose_like_conf(root: Path, port: int) -> Path:
    """compose/nats/nats.conf's shape on loopback: the same include line."""
    include = Path(__file__).resolve().parents[3] / "compose" / "nats" / "nats.conf"
    assert "include auth/auth.conf" in include.read_text()
    conf = root / "conf" / "nats.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        "jetstream {\n"
        f'  store_dir: "{root / "js"}"\n'
        "  sync_interval: always\n"
        "}\n"
        "include auth/auth.conf\n"
    )
    return conf


def _settings_of(cls: type, user: str, root: Path) -> credentials.NatsAuth:
    own = root / "secrets" / user
    s = cls(
        data=root,
        nats_user=user,
        nats_password_file=own / "password",
        nats_tls_ca=own / "ca.pem",
    )
    return credentials.from_settings(s)


async def test_certs_job_files_serve_every_service_over_tls(tmp_path: Path) -> None:
    _certs_job(tmp_path)
    for user in USERS:
        own = tmp_path / "secrets" / user
        assert (own / "password").stat().st_mode & 0o077 == 0
        assert (own / "ca.pem").read_bytes() == (tmp_path / "conf/auth/tls/ca.pem").read_bytes()
    passwords = {u: (tmp_path / "secrets" / u / "password").read_text().strip() for u in USERS}
    auth_conf = (tmp_path / "conf" / "auth" / "auth.conf").read_text()
    assert all(p not in auth_conf for p in passwords.values())
    # a second run (every `compose up`) keeps passwords and the CA
    ca = (tmp_path / "conf/auth/tls/ca.pem").read_bytes()
    _certs_job(tmp_path)
    assert (tmp_path / "conf/auth/tls/ca.pem").read_bytes() == ca
    assert (tmp_path / "secrets/store/password").read_text().strip() == passwords["store"]

    port = daemons.free_port()
    conf = _compose_like_conf(tmp_path, port)
    url = f"nats://127.0.0.1:{port}"
    runner = NatsRunner(
        daemons.nats_command(conf),
        url,
        tmp_path / "js",
        auth=_settings_of(StoreSettings, "mailctl", tmp_path),
        declare=TEST_LIMITS,
        interval=0.5,
        grace=2.0,
    )
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run(stopping))
    try:
        # the store, as its own user, waits for the administrator's declarations
        store = await connect(url, "store", auth=_settings_of(StoreSettings, "store", tmp_path))
        await asyncio.wait_for(await_declared(store.js, asyncio.Event(), 0.2), 60)
        filt = await connect(url, "filter", auth=_settings_of(FilterSettings, "filter", tmp_path))
        try:
            ack = await filt.js.publish(names.SUBJECT_INBOUND, b"compose-like")
            assert ack.stream == names.STREAM_INBOUND
            sub = await store.js.pull_subscribe_bind(
                names.CONSUMER_DELIVERY, stream=names.STREAM_INBOUND
            )
            got = await sub.fetch(1, timeout=10)
            assert got[0].data == b"compose-like"
            await got[0].ack_sync()
        finally:
            await filt.close()
            await store.close()
        info, answer = await asyncio.to_thread(plain_session, "127.0.0.1", port)
        assert info["tls_required"] is True
        assert b"PONG" not in answer
    finally:
        stopping.set()
        await asyncio.wait_for(running, 60)
    assert runner.pid() is None


def _nats_auth(tmp: Path) -> list[str]:
    return [MAILCTL, "nats-auth", "--conf", str(tmp / "c"), "--secrets", str(tmp / "s")]


def test_nats_auth_refuses_a_bad_mirror_node_name(tmp_path: Path) -> None:
    done = subprocess.run(
        [*_nats_auth(tmp_path), "--mirror-nodes", "store-a,Store C"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not a store's node name: Store C" in done.stderr
    assert not (tmp_path / "c").exists()


async def test_a_followers_queue_is_the_mirrors_once_its_node_is_named(tmp_path: Path) -> None:
    """A read-only follower ``store-c`` (POSTERN_MIRROR_FOLLOWERS) gets its records through
    MIRROR_TO_STORE_C, which the feeding mirror declares as its own NATS user: the certs
    job's ``--mirror-nodes`` (POSTERN_MIRROR_NODES) must name it, as it names the pair's."""
    done = subprocess.run(
        _nats_auth(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"POSTERN_MIRROR_NODES": "store-a,store-b,store-c"},
    )
    assert done.returncode == 0, done.stderr
    assert "MIRROR_TO_STORE_C" in (tmp_path / "c" / "auth.conf").read_text()
    for nodes, allowed in ((MIRROR_NODES, False), ((*MIRROR_NODES, "store-c"), True)):
        server = SecureNats(tmp_path / "-".join(nodes), mirror_nodes=nodes)
        server.start()
        try:
            bus = await server.bus("mirror")
            try:
                made = True
                try:
                    await queue.declare(bus.js, "store-c", 16 * 1024**2)
                except Exception:  # no responders / timeout: the server drops the request
                    made = False
                assert made is allowed
                await queue.declare(bus.js, "store-b", 16 * 1024**2)  # the pair's, always
            finally:
                await bus.close()
        finally:
            server.stop()
