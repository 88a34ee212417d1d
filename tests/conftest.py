"""Session-wide real daemons and bus fixtures.

* ``nats_server``: one real nats-server for the whole session (JetStream in a temp dir,
  ``sync_interval: always``). Tests that stop or restart NATS use ``own_nats`` instead.
* ``spamd`` / ``clamd``: real daemons, started on first use and stopped at the end.
* ``bus``: a connection to the session server with every stream declared and emptied, so
  each test starts from an empty bus.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailcore.bus import names
from mailcore.bus.connect import Bus, connect
from mailcore.bus.setup import BusLimits, declare_all
from services.ctl import daemons
from tests.support.daemons import Clamd, NatsServer, Spamd, missing

os.environ.setdefault("POSTERN_LOG_FORMAT", "console")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, free to be stopped and restarted."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spamd]:
    binary = daemons.spamd_binary()
    if binary is None:
        missing("spamd")
        raise AssertionError  # unreachable: missing() skips or fails
    server = Spamd(tmp_path_factory.mktemp("spamd"), binary)
    server.start(timeout=120)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    binary = daemons.clamd_binary()
    if binary is None:
        missing("clamd")
        raise AssertionError
    server = Clamd(tmp_path_factory.mktemp("clamd"), binary)
    server.start(timeout=120)
    yield server
    server.stop()


TEST_LIMITS = BusLimits(
    inbound_max_bytes=256 * 1024**2,
    outbound_max_bytes=64 * 1024**2,
    bodies_max_bytes=512 * 1024**2,
    mirror_max_bytes=64 * 1024**2,
    dead_max_bytes=64 * 1024**2,
)


async def fresh_bus(url: str, limits: BusLimits = TEST_LIMITS) -> Bus:
    """Connect, declare everything, and empty the streams and buckets a test may have used."""
    bus = await connect(url, "postern-test", wait=10)
    await declare_all(bus.js, limits)
    for stream in (
        names.STREAM_INBOUND,
        names.STREAM_OUTBOUND,
        names.STREAM_MIRROR,
        names.STREAM_DEAD,
    ):
        await bus.js.purge_stream(stream)
    for stream in (
        "KV_" + names.KV_DIRECTORY,
        "KV_" + names.KV_CREDENTIALS,
        "KV_" + names.KV_SESSIONS,
        "KV_" + names.KV_AUTH_FAILURES,
        "KV_" + names.KV_RELAY,
        "OBJ_" + names.OBJ_BODIES,
    ):
        await bus.js.purge_stream(stream)
    return bus


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    b = await fresh_bus(nats_server.url)
    yield b
    await b.close()
