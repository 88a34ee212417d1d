"""kill -9 of the real store service in the middle of delivering 1,000 messages: after a
restart every message is in the mailbox exactly once (count and content digests)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.bus.setup import delivery_consumer
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from services.ctl import daemons
from services.store.delivery import stamp
from tests.conftest import TEST_LIMITS, fresh_bus
from tests.support.daemons import NatsServer

ROOT = Path(__file__).resolve().parents[3]
TOTAL = 1000

pytestmark = pytest.mark.slow


def _store(nats: NatsServer, data: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "POSTERN_NATS_URL": nats.url,
        "POSTERN_DATA": str(data),
        "POSTERN_OPS_PORT": str(daemons.free_port()),
        "POSTERN_IMAP_PORT": "0",
        "POSTERN_IMAPS_PORT": "0",
        "POSTERN_POP3_PORT": "0",
        "POSTERN_POP3S_PORT": "0",
        "POSTERN_FSYNC": "true",
        # Small batches: many commits, so the kill lands between and inside them.
        "POSTERN_DELIVERY_BATCH": "7",
        "POSTERN_LOG_FORMAT": "console",
    }
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "services.store"], cwd=ROOT, env=env, stdout=fh, stderr=fh
        )


async def test_kill_9_mid_delivery_loses_and_duplicates_nothing(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    bus = await fresh_bus(own_nats.url)

    async def shorten_ack_wait() -> None:
        """What a killed store fetched but never acked comes back after ack_wait: make that
        seconds, not a minute, once the new store has declared the consumer (60 s)."""
        while True:
            info = await bus.js.consumer_info(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
            if info.config.ack_wait == TEST_LIMITS.delivery_ack_wait:
                break
            await asyncio.sleep(0.01)
        config = delivery_consumer(TEST_LIMITS)
        config.ack_wait, config.backoff = 2.0, None
        await bus.js.add_consumer(names.STREAM_INBOUND, config)

    config = delivery_consumer(TEST_LIMITS)
    config.ack_wait, config.backoff = 2.0, None
    await bus.js.add_consumer(names.STREAM_INBOUND, config)
    directory = await Directory.open(bus.js)
    await directory.add_domain("crash.test")
    user = await directory.add_user("victim@crash.test", "password-victim")
    await directory.close()
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    expected: Counter[str] = Counter()
    for start in range(0, TOTAL, 100):
        pubs = []
        for i in range(start, start + 100):
            body = (
                f"From: s{i}@remote.example\r\nSubject: crash {i}\r\nMessage-ID: <{i}@crash>\r\n"
                f"\r\n{os.urandom(400).hex()}\r\n"
            ).encode()
            msg = MailMessage(
                id=new_message_id(), mail_from=f"s{i}@remote.example",
                recipients=["victim@crash.test"], size=0,
            )  # fmt: skip
            expected[hashlib.sha256(stamp(msg, user.address, body)).hexdigest()] += 1
            pubs.append(publish_mail(bus.js, bodies, names.SUBJECT_INBOUND, msg, body))
        await asyncio.gather(*pubs)

    async def backlog() -> int:
        return int((await bus.js.stream_info(names.STREAM_INBOUND)).state.messages)

    assert await backlog() == TOTAL
    data, log = tmp_path / "data", tmp_path / "store.log"
    kills = []
    for threshold in (TOTAL * 3 // 4, TOTAL // 3):
        proc = _store(own_nats, data, log)
        await shorten_ack_wait()
        left = await backlog()
        while left > threshold:
            assert proc.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.002)
            left = await backlog()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(left)
    # Both kills landed while mail was still waiting: the test crashed a busy store.
    assert all(0 < k < TOTAL for k in kills), kills

    proc = _store(own_nats, data, log)
    await shorten_ack_wait()
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while await backlog() > 0:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert asyncio.get_running_loop().time() < deadline, "store did not drain"
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    await bus.close()

    store = await MailStore.open(store_root(data))
    try:
        acct = await store.account(user.account_id)
        inbox = await acct.mailbox("INBOX")
        snap = await acct.snapshot(inbox.id)
        assert len(snap.uids) == TOTAL
        assert snap.uids == list(range(snap.uids[0], snap.uids[0] + TOTAL))
        got: Counter[str] = Counter()
        for rec in await acct.fetch(inbox.id, snap.uids, parsed=False):
            with acct.open_message(rec) as fh:
                got[hashlib.sha256(fh.read()).hexdigest()] += 1
        assert got == expected
        sizes = [rec.size for rec in await acct.fetch(inbox.id, snap.uids, parsed=False)]
        assert await acct.usage() == (sum(sizes), TOTAL)
    finally:
        await store.close()
