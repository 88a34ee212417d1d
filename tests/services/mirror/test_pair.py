"""Two complete stores (own data directories, ports and nats-servers), each with its own
mirror process: mail delivered while one side is down reaches it when it returns, with
the same UIDs, UIDVALIDITY, flags and digests; kill -9 of the master while its peer is
down loses nothing queued; changes made on both sides converge, and none comes back."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from nats.errors import Error as NatsError

from mailcore.bus import mirror as queue
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.schemas import MailMessage, new_message_id
from mailcore.directory import Directory
from mailcore.mailstore import MailStore, store_root
from mailcore.mailstore.model import FlagOp
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import Side, contents, digests, mailctl, request, until

TOTAL = 1000

# two complete stores, each with its own processes: slow on a loaded machine (a hang guard)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


async def test_pair_catch_up_kill9_and_two_way_convergence(tmp_path: Path) -> None:
    a = Side(tmp_path, "store-a", "store-b", role="master")
    b = Side(tmp_path, "store-b", "store-a", role="slave")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    bus_a = await fresh_bus(a.nats.url)
    directory = await Directory.open(bus_a.js)
    await directory.add_domain("pair.test")
    user = await directory.add_user("pat@pair.test", "password-pat")
    await directory.close()
    account = user.account_id
    try:
        # --- the slave's whole side is down (store, mirror and its nats-server) ---------
        b.nats.stop()
        a.start()
        bodies = await bus_a.js.object_store(names.OBJ_BODIES)
        for start in range(0, TOTAL, 100):
            pubs = []
            for i in range(start, start + 100):
                body = f"From: s{i}@x.example\r\nSubject: m {i}\r\n\r\n{os.urandom(200).hex()}\r\n"
                msg = MailMessage(
                    id=new_message_id(), mail_from=f"s{i}@x.example",
                    recipients=["pat@pair.test"], size=0,
                )  # fmt: skip
                pubs.append(
                    publish_mail(bus_a.js, bodies, names.SUBJECT_INBOUND, msg, body.encode())
                )
            await asyncio.gather(*pubs)
        # one body above 512 KiB: it travels through MIRROR_BODIES, not inline
        big = b"From: big@x.example\r\nSubject: big\r\n\r\n" + b"y" * 76 + b"\r\n"
        big = big * 9000  # about 700 KiB
        msg = MailMessage(
            id=new_message_id(), mail_from="big@x.example", recipients=["pat@pair.test"], size=0
        )
        await publish_mail(bus_a.js, bodies, names.SUBJECT_INBOUND, msg, big)

        async def queued_for_b() -> bool:
            count, _ = await queue.queue(bus_a.js, "store-b")
            return count >= TOTAL + 1 + 6  # six default mailboxes, then every delivery

        await until(queued_for_b, "1,000 deliveries queued for the slave", [a])
        _, lag = await queue.queue(bus_a.js, "store-b")
        assert lag > 0

        async def status_reported() -> bool:
            return bool((await queue.read_status(bus_a.js, "store-b")).get("sent", 0) >= TOTAL + 7)

        await until(status_reported, "the mirror reported its counters", [a])
        st = json.loads(await mailctl("mirror", "status", "--json", "--nats", a.nats.url))
        assert st["queued"] >= TOTAL + 7 and st["sent"] >= TOTAL + 7
        assert st["lag_seconds"] > 0 and st["peer_link"] is False
        assert st["applied"] == 0
        # --- kill -9 of the master while the slave is down: nothing queued is lost -------
        a.kill9()
        a.start()
        b.nats.start()
        b.start()
        bus_b = await fresh_bus(b.nats.url)

        async def converged() -> bool:
            count, _ = await queue.queue(bus_a.js, "store-b")
            back, _ = await queue.queue(bus_b.js, "store-a")
            if count or back:
                return False
            try:
                return await digests(bus_a, account) == await digests(bus_b, account)
            except (KeyError, TimeoutError, NatsError):  # a store still starting
                return False

        await until(converged, "the slave caught up", [a, b])
        inbox_digest = (await digests(bus_b, account))["INBOX"]
        assert inbox_digest[1] != "0" * 64
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        inbox = next(k for k in got_a if k.startswith("INBOX/"))
        assert len(got_a[inbox]) == TOTAL + 1
        assert got_a == got_b  # same mailboxes, UIDVALIDITY, UIDs, bytes and flags

        # --- changes on both sides (different messages) converge -----------------------
        for data, uids_from, flag in ((a.data, 0, "\\Seen"), (b.data, 500, "\\Flagged")):
            store = await MailStore.open(store_root(data))
            acct = await store.account(account)
            box = await acct.mailbox("INBOX")
            uids = [u for u, _, _ in got_a[inbox][uids_from : uids_from + 20]]
            await acct.store_flags(box.id, uids[:10], FlagOp.ADD, {flag})
            await acct.expunge(box.id, uids[10:], force=True)
            await store.close()
        a.start()
        b.start()
        await until(converged, "both sides' changes converged", [a, b])
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        assert got_a == got_b
        assert len(got_a[inbox]) == TOTAL + 1 - 20
        flagged = [u for u, _, f in got_b[inbox] if "\\Flagged" in f]
        seen_uids = [u for u, _, f in got_b[inbox] if "\\Seen" in f]
        assert len(flagged) == 10 and len(seen_uids) == 10
        # --- the slave wiped: `mailctl mirror resync` sends everything again -------------
        shutil.rmtree(b.data)
        a.start()
        b.start()

        async def a_answers() -> bool:
            try:
                return "accounts" in await request(bus_a, "accounts", {})
            except NatsError:
                return False

        await until(a_answers, "store A answers", [a, b])
        out = await mailctl(
            "mirror", "resync", "--nats", a.nats.url, "--peer-nats", b.nats.url, "--peer", "store-b"
        )
        assert "full resync to store-b done" in out and f"added {TOTAL + 1 - 20}" in out
        await until(converged, "the wiped slave was filled again", [a, b])
        a.stop()
        b.stop()
        assert await contents(b.data, account) == got_a
        await bus_b.close()
    finally:
        for side in (a, b):
            for p in side.procs:
                p.kill()
                p.wait()
        await bus_a.close()
        a.nats.stop()
        b.nats.stop()
