"""Two webmail processes share the failed-login policy (mailcore.loginguard): failures on
one node count on the other and survive a node's restart, per (account, browser address)
and per browser address, and each failure is counted once although the store, believing
the nodes' x-originating-ip, counts it too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mailcore.bus.connect import Bus
from mailcore.loginguard import LoginGuard
from tests.conftest import fresh_bus
from tests.services.webmail.app_harness import login
from tests.services.webmail.cluster import ALICE, BOB, PASSWORD, Cluster, Proc, provision
from tests.support.daemons import NatsServer

# the webmail nodes' policy; the store keeps its defaults (10 per pair, 30 per address)
POLICY = {
    "POSTERN_LOGIN_MAX_FAILURES": "3",
    "POSTERN_LOGIN_MAX_FAILURES_PER_ADDRESS": "5",
    "POSTERN_AUTH_FAIL_DELAY": "0",
}
BROWSER = "198.51.100.7"


@pytest.fixture
async def nodes(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Bus, Cluster]]:
    bus = await fresh_bus(nats_server.url)
    await provision(bus)
    c = Cluster(nats_server.url, tmp_path)
    try:
        c.start_store(POSTERN_AUTH_FAIL_DELAY="0")
        c.start_webmail(**POLICY)
        c.start_webmail(**POLICY)
        yield bus, c
    finally:
        c.stop()
        await bus.close()


def browser(node: Proc, address: str = BROWSER) -> httpx.AsyncClient:
    # the nodes believe X-Forwarded-For from 127.0.0.1 (the balancer in production)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{node.port}",
        headers={"X-Forwarded-For": address},
        timeout=60,
    )


async def attempt(node: Proc, user: str, password: str, address: str = BROWSER) -> int:
    async with browser(node, address) as c:
        return (await login(c, user, password)).status_code


async def test_failures_on_one_node_count_on_the_other(nodes: tuple[Bus, Cluster]) -> None:
    bus, c = nodes
    a, b = c.webmails
    for _ in range(3):
        assert await attempt(a, ALICE, "wrong password") == 401
    # the other node refuses the right password: this account from this address is locked
    assert await attempt(b, ALICE, PASSWORD) == 429
    # each failure counted once, though the store counted it under the browser's address too
    shared = await LoginGuard.open(bus.js)
    assert await shared.failures(BROWSER, ALICE) == 3
    # the right password from another browser address still works
    assert await attempt(b, ALICE, PASSWORD, "198.51.100.8") == 303
    # a restarted node forgets nothing
    a.kill()
    a.start()
    assert await attempt(a, ALICE, PASSWORD) == 429


async def test_an_address_failing_across_nodes_and_accounts_is_refused(
    nodes: tuple[Bus, Cluster],
) -> None:
    _, c = nodes
    a, b = c.webmails
    for i in range(5):  # 5 failures, spread over both nodes and two accounts
        assert await attempt((a, b)[i % 2], (ALICE, BOB)[i % 2], "wrong password") == 401
    assert await attempt(a, "carol@example.com", "whatever") == 429
    assert await attempt(b, BOB, PASSWORD) == 429
    assert await attempt(b, BOB, PASSWORD, "198.51.100.9") == 303
