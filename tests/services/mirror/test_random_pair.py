"""Random operations over real IMAP sessions on both stores of a pair (roles master and
slave, the settlement running), with the link cut and healed between rounds: mailboxes
created with their hierarchy (RFC 3501 §6.3.3: missing superior names made on demand),
renamed and deleted, messages appended, flagged, expunged, moved (RFC 6851: into any
mailbox, their own too) and copied onto their own mailbox with the first UIDs expunged,
on both sides at once. Afterwards both stores hold the same mailboxes (names, ids,
UIDVALIDITY), the same messages under the same UIDs with the same flags, nothing set
aside is left, no UID names two messages, and no message either side never touched is
lost.

What it found (fixed, each with an engine test that fails without the fix): a parent
made by CREATE ``Z/Sub`` left on store-a only (a batch applied as one group commit did not
see its own earlier journal records: test_splitboxes.py), a mailbox set aside on store-b
never drained once the resolver merged its target on (test_splitboxes.py), and a message
moved within its mailbox, or out and back, while cut lost on the deferring side
(test_splitbrain.py; since then named by the resolver's uid-move records, which also
settle MOVE onto the same mailbox and COPY there with the first UIDs expunged: seeds
100-160 and 200-260 pass). Seed 206 ended with ``Work`` (made by CREATE ``Work/Sub``) on
store-a only in the run of seeds 200-215 on the code before (1 of 16); 201 once with a
set-aside mailbox left on store-b.

A few fixed seeds run in the suite (each well under a minute); ``POSTERN_RANDOM_PAIR_SEEDS``
(``200-260``, a range, or ``3,7``) runs others, for hunting outside the suite."""

from __future__ import annotations

import asyncio
import hashlib
import imaplib
import os
import random
import re
from pathlib import Path

import pytest

from mailcore.bus import mirror as queue
from mailcore.directory import Directory
from mailcore.mailstore.splitboxes import PARKED
from tests.conftest import fresh_bus
from tests.services.mirror.conftest import contents, digests, until
from tests.services.mirror.test_split_brain import (
    ADDRESS,
    PASSWORD,
    SplitSide,
    appended,
    deliver,
    opened,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# names on both sides, with hierarchy: a CREATE of ``Z/Sub`` makes ``Z`` too
NAMES = ["X", "Z", "Z/Sub", "Z/Sub/Deep", "Work", "Work/Sub", "Y/Z"]
ROUNDS = 3  # link up, then cut, alternately
OPS = 25  # per side and round


def _seeds() -> list[int]:
    spec = os.environ.get("POSTERN_RANDOM_PAIR_SEEDS", "")
    if not spec:
        return [206, 201, 204]
    if "-" in spec:
        lo, hi = spec.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in spec.split(",")]


class RoleSide(SplitSide):
    """A side of the pair with its role, whose mirror can be stopped alone."""

    def __init__(self, tmp: Path, node: str, peer: str, role: str) -> None:
        super().__init__(tmp, node, peer)
        self.role = role


class Imap:
    """One IMAP session (imaplib in a thread); every answer taken as it comes (a NO is
    an answer too: the other side, or the settlement, may have changed the mailbox)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.imap: imaplib.IMAP4 | None = None

    async def connect(self) -> None:
        self.imap = await asyncio.to_thread(imaplib.IMAP4, "127.0.0.1", self.port)
        await asyncio.to_thread(self.imap.login, ADDRESS, PASSWORD)

    async def run(self, name: str, *args: str | bytes) -> tuple[str, list[object]]:
        """The answer; after a BYE (the selected mailbox deleted on the other side: the
        server ends the session) a new session, and "BYE" for the answer."""
        assert self.imap is not None
        try:
            typ, data = await asyncio.to_thread(getattr(self.imap, name), *args)
        except imaplib.IMAP4.abort:
            self.close()
            await self.connect()
            return "BYE", []
        except imaplib.IMAP4.error as exc:
            if "illegal in state" not in str(exc):
                raise
            return "NO", []  # (the session was new since the SELECT: not selected)
        return typ, list(data)

    async def mailboxes(self) -> list[str]:
        _, data = await self.run("list", '""', "*")
        out = []
        for line in data:
            if isinstance(line, bytes):
                m = re.match(rb'\(.*?\) "/" (.*)$', line)
                if m:
                    out.append(m[1].decode().strip('"'))
        return out

    async def uids(self) -> list[int]:
        typ, data = await self.run("uid", "SEARCH", "ALL")
        if typ != "OK" or not data or not isinstance(data[0], bytes):
            return []
        return [int(u) for u in data[0].split()]

    async def subjects(self, uids: str) -> set[str]:
        """The Subjects of these UIDs of the selected mailbox."""
        _, data = await self.run("uid", "FETCH", uids, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        rows = [d[1] for d in data if isinstance(d, tuple) and isinstance(d[1], bytes)]
        return {m[1].decode() for r in rows if (m := re.search(rb"Subject: (\S+)", r))}

    def close(self) -> None:
        if self.imap is not None:
            try:
                self.imap.logout()
            except (OSError, imaplib.IMAP4.error):
                pass


def _quote(name: str) -> str:
    return '"' + name + '"'


async def operate(
    client: Imap, tag: str, rng: random.Random, count: int, inbox: set[str], touched: set[str]
) -> None:
    """``count`` random operations through ``client``; the Subjects appended to INBOX go
    to ``inbox``, those of messages expunged or moved to ``touched``."""
    for i in range(count):
        boxes = [b for b in await client.mailboxes() if PARKED not in b]
        others = [b for b in boxes if b != "INBOX"]
        roll = rng.random()
        if roll < 0.15:
            await client.run("create", rng.choice(NAMES))
        elif roll < 0.22 and others:
            await client.run("rename", _quote(rng.choice(others)), rng.choice(NAMES))
        elif roll < 0.30 and others:
            await client.run("delete", _quote(rng.choice(others)))
        elif roll < 0.60 or not boxes:
            subject, box = f"{tag}{i}", rng.choice(boxes or ["INBOX"])
            typ, _ = await client.run("append", _quote(box), "", "", appended(subject))
            if typ == "OK" and box == "INBOX":
                inbox.add(subject)
        else:
            box = "INBOX" if rng.random() < 0.4 else rng.choice(boxes)
            typ, _ = await client.run("select", _quote(box))
            if typ != "OK":
                continue
            uids = await client.uids()
            if not uids:
                continue
            picked = ",".join(str(u) for u in rng.sample(uids, min(2, len(uids))))
            if roll < 0.80:
                flag = rng.choice(["\\Seen", "\\Flagged", "$Label1"])
                await client.run("uid", "STORE", picked, rng.choice(["+FLAGS", "-FLAGS"]), flag)
            elif roll < 0.90:
                touched.update(await client.subjects(picked))
                await client.run("uid", "STORE", picked, "+FLAGS", "(\\Deleted)")
                await client.run("uid", "EXPUNGE", picked)
            elif roll < 0.96:
                # RFC 6851 MOVE anywhere, onto the same mailbox too (the same bytes under
                # a new UID, the old one expunged) and back where a message was before
                touched.update(await client.subjects(picked))
                await client.run("uid", "MOVE", picked, _quote(rng.choice(boxes)))
            else:
                # COPY onto the same mailbox (RFC 3501 §6.4.7), then the first UIDs
                # expunged: the same bytes twice in one mailbox, one UID expunged
                touched.update(await client.subjects(picked))
                await client.run("uid", "COPY", picked, _quote(box))
                await client.run("uid", "STORE", picked, "+FLAGS", "(\\Deleted)")
                await client.run("uid", "EXPUNGE", picked)
            await client.run("close")


@pytest.mark.parametrize("seed", _seeds())
async def test_random_imap_operations_on_both_stores_converge(tmp_path: Path, seed: int) -> None:
    a = RoleSide(tmp_path, "store-a", "store-b", "master")
    b = RoleSide(tmp_path, "store-b", "store-a", "slave")
    a.nats.start()
    b.nats.start()
    a.peer_url, b.peer_url = b.nats.url, a.nats.url
    bus_a, bus_b = await fresh_bus(a.nats.url), await fresh_bus(b.nats.url)
    dir_a, dir_b = await Directory.open(bus_a.js), await Directory.open(bus_b.js)
    for d in (dir_a, dir_b):
        await d.add_domain("split.test")
    user = await dir_a.add_user(ADDRESS, PASSWORD)
    await dir_b._put("user", user.address, user, create=True)  # same account id
    await dir_b.set_password(user.address, PASSWORD)
    await dir_a.close()
    await dir_b.close()
    account = user.account_id
    clients = [Imap(a.imap_port), Imap(b.imap_port)]
    rng = random.Random(seed)
    last: list[object] = []
    try:
        a.start()
        b.start()
        await deliver(bus_a, ["first"])

        async def converged() -> bool:
            try:
                if not await opened(bus_a, account) or not await opened(bus_b, account):
                    return False
                if (await queue.queue(bus_a.js, "store-b"))[0]:
                    return False
                if (await queue.queue(bus_b.js, "store-a"))[0]:
                    return False
                da, db = await digests(bus_a, account), await digests(bus_b, account)
            except Exception:  # a store or stream still starting
                return False
            last[:] = [da, db]
            return da == db and "INBOX" in da

        async def settled() -> bool:
            """Converged, and still so a moment later (a record read from a journal but
            not yet queued would change it)."""
            if not await converged():
                return False
            await asyncio.sleep(1.5)
            return await converged()

        await until(converged, "the first mail reached both stores", [a, b])
        for c in clients:
            await c.connect()
        inbox: set[str] = set()
        touched: set[str] = set()
        for r in range(ROUNDS * 2):
            cut = r % 2 == 1
            if cut:
                a.cut()
                b.cut()
            await asyncio.gather(
                *(
                    operate(c, f"s{seed}r{r}{side}-", random.Random(rng.random()), OPS, inbox,
                            touched)
                    for c, side in zip(clients, "ab", strict=True)
                )
            )  # fmt: skip
            if cut:
                a.heal()
                b.heal()
        await until(settled, "both stores converged", [a, b], timeout=120, seen=lambda: last)
        for c in clients:
            c.close()
        a.stop()
        b.stop()
        got_a, got_b = await contents(a.data, account), await contents(b.data, account)
        assert got_a == got_b, f"seed {seed}: {sorted(set(got_a) ^ set(got_b))}"
        assert not any(PARKED in k for k in got_a), list(got_a)
        for listed in got_a.values():
            uids = [u for u, _, _ in listed]
            assert len(uids) == len(set(uids))
        held = {sha for listed in got_a.values() for _, sha, _ in listed}
        lost = [s for s in inbox - touched if hashlib.sha256(appended(s)).hexdigest() not in held]
        assert not lost, f"seed {seed}: lost {lost}"
    finally:
        for c in clients:
            c.close()
        for side in (a, b):
            side.reap()
        await bus_a.close()
        await bus_b.close()
        a.nats.stop()
        b.nats.stop()
