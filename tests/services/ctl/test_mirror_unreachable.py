"""``mailctl mirror resync*`` and ``mailctl mirror status`` while the peer is away (a real
nats-server and store process on this side): the peer's NATS down, then its NATS up
without its store. Each resync command ends with one line on stderr naming what is
unreachable, and a non-zero exit — before, ``resync`` looped for ever printing nats-py's
tracebacks of every reconnect try; ``status`` says the same in its own words and exits 0."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.errors import Error as NatsError

from mailcore.bus import roles
from mailcore.mailstore import MailStore, store_root
from services.ctl import daemons
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import ROOT, Side, request, until
from tests.support.daemons import NatsServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RESYNCS = [["resync"], ["resync-fast", "--force"], ["resync-mkdir"], ["resync-config"]]
GUARD = 120.0  # a hang guard for one command (the bug was a command that never ended)


async def mailctl(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "mailctl"), *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GUARD)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        what = f"mailctl {' '.join(args)} never ended: {err.decode()[-2000:]}"
        raise AssertionError(what) from None
    return int(proc.returncode or 0), out.decode(), err.decode()


def one_clear_line(err: str) -> str:
    """The one ``mailctl:`` failure line (progress lines may come before it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "──" not in err, err[-3000:]
    failures = [line for line in lines if line.startswith("mailctl: ")]
    assert failures == lines[-1:], err[-3000:]
    return failures[0]


async def test_resync_and_status_with_the_peer_away(tmp_path: Path) -> None:
    here = Side(tmp_path, "store-a", "store-b", role="master")
    here.nats.start()
    peer_nats = NatsServer(tmp_path / "peer-nats")
    store: subprocess.Popen[bytes] | None = None
    try:
        bus = await fresh_bus(here.nats.url)
        held = await MailStore.open(store_root(here.data))  # one account to resync
        try:
            await held.account("acct-pat")
        finally:
            await held.close()
        env = {**here.env(), "POSTERN_OPS_PORT": str(daemons.free_port())}
        here.dir.mkdir(parents=True, exist_ok=True)
        with open(here.log, "ab") as fh:
            store = subprocess.Popen(
                [sys.executable, "-m", "services.store"], cwd=ROOT, env=env, stdout=fh, stderr=fh
            )

        async def answers() -> bool:
            try:
                return "acct-pat" in (await request(bus, "accounts", {}))["accounts"]
            except NatsError:
                return False

        await until(answers, "this store answering", [])
        await bus.close()

        # --- the peer's NATS is down (nothing listens on its port) ------------------------
        dead = f"nats://127.0.0.1:{daemons.free_port()}"
        cli = {**os.environ, **here.env(), "POSTERN_PEER_NATS_URL": dead}
        for command in RESYNCS:
            code, _, err = await mailctl(cli, "mirror", *command)
            line = one_clear_line(err)
            assert code != 0, (command, err)
            assert f"cannot reach the peer's NATS at {dead}" in line, (command, line)
        code, out, err = await mailctl(cli, "mirror", "status")
        assert code == 0, err
        assert f"peer store: NATS unreachable (cannot reach NATS at {dead}" in out, out

        # --- the peer's NATS answers, its store does not run --------------------------------
        peer_nats.start()
        cli["POSTERN_PEER_NATS_URL"] = peer_nats.url
        peer_bus = await fresh_bus(peer_nats.url)  # its streams and buckets, as a set-up peer
        await roles.write(peer_bus.js, roles.SLAVE, 0, "store-b")  # it ran before, then died
        await peer_bus.close()
        for command in RESYNCS[:3]:
            code, _, err = await mailctl(cli, "mirror", *command)
            line = one_clear_line(err)
            assert code != 0, (command, err)
            assert f"store store-b is not answering on {peer_nats.url}" in line, (command, line)
        code, out, err = await mailctl(cli, "mirror", "status")
        assert code == 0, err
        assert "peer store store-b: slave (epoch 0), store NOT running" in out, out
        # the directory needs only the peer's NATS: resync-config works
        code, out, err = await mailctl(cli, "mirror", "resync-config")
        assert code == 0, err
        assert "directory sent" in out, out
    finally:
        if store is not None:
            store.kill()
            store.wait()
        peer_nats.stop()
        here.nats.stop()
