"""The whole path with real processes: SMTP → filter (real spamd/clamd) → JetStream →
store (``python -m services.store``) → IMAP. Clean mail lands in INBOX, tagged spam in
Junk, 25 MB arrive byte-identical, and mail accepted while the store is down arrives when
it is back."""

from __future__ import annotations

import asyncio
import imaplib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailcore.bus.connect import Bus
from services.ctl.daemons import free_port, wait_for_port
from services.filter.app import FilterNode
from tests.services.filter.conftest import ALICE, PASSWORD, Accounts, RawClient, StartFilter
from tests.services.filter.samples import CLEAN
from tests.services.filter.test_large import big_message
from tests.support.daemons import Clamd, NatsServer, Spamd

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Store:
    nats_url: str
    workdir: Path
    imap_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.imap_port = free_port()
        env = os.environ | {
            "POSTERN_NATS_URL": self.nats_url,
            "POSTERN_DATA": str(self.workdir / "store"),
            "POSTERN_OPS_PORT": str(free_port()),
            "POSTERN_IMAP_PORT": str(self.imap_port),
            "POSTERN_IMAPS_PORT": "0",
            "POSTERN_POP3_PORT": "0",
            "POSTERN_POP3S_PORT": "0",
            "POSTERN_ALLOW_PLAINTEXT_AUTH": "loopback",
            "POSTERN_LOG_FORMAT": "json",
        }
        with open(self.workdir / "store.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.store"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        proc = self.proc
        if not wait_for_port("127.0.0.1", self.imap_port, 60, lambda: proc.poll() is None):
            raise AssertionError(f"the store did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self) -> str:
        return (self.workdir / "store.log").read_text(errors="replace")[-3000:]

    def mailbox(self, user: str, box: str) -> list[bytes]:
        with imaplib.IMAP4("127.0.0.1", self.imap_port) as imap:
            imap.login(user, PASSWORD)
            status, _ = imap.select(box, readonly=True)
            assert status == "OK", box
            _, found = imap.uid("SEARCH", "ALL")
            messages = []
            for uid in found[0].split():
                _, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                item = data[0]
                assert isinstance(item, tuple)
                messages.append(item[1])
            return messages

    async def wait_for(self, user: str, box: str, count: int, timeout: float = 60) -> list[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await asyncio.to_thread(self.mailbox, user, box)
            if len(found) >= count or loop.time() > deadline:
                return found
            await asyncio.sleep(0.3)


@pytest.fixture
def store(nats_server: NatsServer, accounts: Accounts, tmp_path: Path) -> Iterator[Store]:
    server = Store(nats_server.url, tmp_path)
    yield server
    server.stop()


async def deliver(node: FilterNode, message: bytes, rcpt: str = ALICE) -> str:
    client = await RawClient.connect(node.settings.smtp_port)
    try:
        await client.expect("EHLO client.test", 250)
        await client.expect("MAIL FROM:<carol@remote.test>", 250)
        await client.expect(f"RCPT TO:<{rcpt}>", 250)
        return await client.send_message(message)
    finally:
        await client.close()


def scanners(spamd: Spamd, clamd: Clamd) -> dict[str, object]:
    return {
        "spamd_enabled": True,
        "spamd_host": spamd.host,
        "spamd_port": spamd.port,
        "clamd_enabled": True,
        "clamd_host": clamd.host,
        "clamd_port": clamd.port,
    }


async def test_clean_mail_to_inbox_and_tagged_spam_to_junk(
    store: Store, start_filter: StartFilter, bus: Bus, spamd: Spamd, clamd: Clamd
) -> None:
    store.start()
    mx = await start_filter(**scanners(spamd, clamd))
    # Same daemons, thresholds below this message's score: it is tagged as spam.
    strict = await start_filter(
        **scanners(spamd, clamd), spam_tag_score=-50.0, spam_reject_score=500.0
    )
    assert (await deliver(mx, CLEAN)).startswith("250 ")
    tagged = CLEAN.replace(b"lunch on Thursday", b"lunch on Friday")
    assert (await deliver(strict, tagged)).startswith("250 ")

    [inbox] = await store.wait_for(ALICE, "INBOX", 1)
    assert inbox.endswith(CLEAN)
    assert b"X-Spam-Status: No, score=" in inbox
    [junk] = await store.wait_for(ALICE, "Junk", 1)
    assert junk.endswith(tagged)
    assert b"\r\nX-Spam-Flag: YES\r\n" in junk
    assert len(await asyncio.to_thread(store.mailbox, ALICE, "INBOX")) == 1


async def test_25_mb_message_delivered_byte_identical(
    store: Store, start_filter: StartFilter, bus: Bus, clamd: Clamd
) -> None:
    store.start()
    node = await start_filter(
        clamd_enabled=True, clamd_host=clamd.host, clamd_port=clamd.port, handoff_timeout=60.0
    )
    original = big_message()
    assert (await deliver(node, original)).startswith("250 ")
    [stored] = await store.wait_for(ALICE, "INBOX", 1, timeout=120)
    assert len(stored) > len(original)
    assert stored.endswith(original)  # every byte the client sent, after our trace headers


async def test_store_stopped_still_250_and_the_mail_arrives_later(
    store: Store, start_filter: StartFilter, bus: Bus
) -> None:
    node = await start_filter()
    store.start()
    store.stop()  # the store was up once, and now it is down
    messages = [CLEAN.replace(b"lunch", f"lunch {i}".encode()) for i in range(3)]
    replies = [await deliver(node, message) for message in messages]
    assert all(r.startswith("250 2.0.0 Ok: queued as ") for r in replies)
    store.start()
    arrived = await store.wait_for(ALICE, "INBOX", 3)
    assert len(arrived) == 3
    assert {m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in arrived} == {
        f"lunch {i} on Thursday".encode() for i in range(3)
    }
