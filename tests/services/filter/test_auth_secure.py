"""SMTP AUTH on a filter whose NATS user may not read the password hashes (issue 18).

A real nats-server with a user per service, a filter node connected as ``filter``, the
store as a process connected as ``store``: the filter asks the store to check each
password (``postern.auth.verify``). The right password gets 235 and the mail is handed
off; a wrong one 535; a store that does not answer (stopped with SIGSTOP) and no store at
all get ``454 4.7.0`` (RFC 4954 §6), which costs the user nothing: the same password works
once the store is back. nats-server logs no permissions violation meanwhile."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from mailcore.bus.setup import declare_all
from mailcore.directory import Directory
from services.filter.app import FilterNode
from services.filter.smtp import replies
from tests.conftest import TEST_LIMITS
from tests.services.filter.conftest import (
    ALICE,
    BOB,
    DOMAIN,
    PASSWORD,
    RawClient,
    client_tls,
    filter_settings,
    stream_messages,
)
from tests.services.store.imap.test_process import StoreProcess, store_env
from tests.support.securenats import SecureNats

MESSAGE = b"From: alice@example.test\r\nSubject: submitted\r\n\r\nHi Bob.\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SecureNats]:
    s = SecureNats(tmp_path / "nats")
    s.start()
    yield s
    s.stop()


async def _provision(admin: Bus) -> None:
    await declare_all(admin.js, TEST_LIMITS)
    directory = await Directory.open(admin.js, watch=False)
    await directory.add_domain(DOMAIN)
    await directory.add_user(ALICE, PASSWORD)
    await directory.add_user(BOB, PASSWORD)


async def _login(node: FilterNode, user: str, password: str) -> tuple[RawClient, str]:
    """A submission session after STARTTLS and AUTH PLAIN, and the answer to AUTH."""
    client = await RawClient.connect(node.settings.submission_port)
    await client.expect("EHLO client.test", 250)
    await client.starttls(client_tls(node))
    await client.expect("EHLO client.test", 250)
    return client, await client.login(user, password)


async def _answer(node: FilterNode, user: str, password: str) -> str:
    client, answer = await _login(node, user, password)
    await client.close()
    return answer


async def test_smtp_auth_asks_the_store(server: SecureNats, tmp_path: Path) -> None:
    admin = await server.bus("mailctl")
    await _provision(admin)
    env = store_env(server.url, tmp_path / "store")
    env |= {"POSTERN_NATS_USER": "store", "POSTERN_NATS_PASSWORD": server.passwords["store"]}
    store = StoreProcess(env, tmp_path / "store.log")
    store.start()
    filter_bus = await server.bus("filter")
    node = FilterNode(filter_settings(tmp_path, auth_timeout=2.0), filter_bus, fill_refresh=0.2)
    await node.start()
    try:
        # the right password: 235, and the submission goes through
        client, answer = await _login(node, ALICE, PASSWORD)
        assert answer == str(replies.AUTH_OK)
        await client.expect(f"MAIL FROM:<{ALICE}>", 250)
        await client.expect(f"RCPT TO:<{BOB}>", 250)
        assert (await client.send_message(MESSAGE)).startswith("250 ")
        await client.close()
        [queued] = await stream_messages(admin)
        assert queued.client.auth_user == ALICE and queued.recipients == [BOB]
        # a wrong password, and an unknown user: 535
        assert await _answer(node, ALICE, "not the password") == str(replies.AUTH_FAILED)
        assert await _answer(node, "nobody@example.test", PASSWORD) == str(replies.AUTH_FAILED)
        # the store does not answer (stopped): 454 once auth_timeout has passed
        assert store.proc is not None
        store.proc.send_signal(signal.SIGSTOP)
        try:
            assert await _answer(node, ALICE, PASSWORD) == str(replies.AUTH_TEMPORARY)
        finally:
            store.proc.send_signal(signal.SIGCONT)
        assert await _answer(node, ALICE, PASSWORD) == str(replies.AUTH_OK)
        # no store at all: 454 at once (no responder), and not counted as a failure
        store.stop()
        for _ in range(3):
            assert await _answer(node, ALICE, PASSWORD) == str(replies.AUTH_TEMPORARY)
        assert str(replies.AUTH_TEMPORARY).startswith("454 4.7.0 ")
        log = server.log_path.read_text(errors="replace")
        assert [line for line in log.splitlines() if "Violation" in line] == []
    finally:
        await node.stop()
        store.stop()
        await filter_bus.close()
        await admin.close()
