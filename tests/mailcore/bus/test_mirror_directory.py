"""The directory and the password hashes on both stores of a mirrored pair
(mailcore/bus/mirror_directory.py), on two real nats-servers: the live follow the mirror
runs carries users *and* their hashes, so a login made on one store works on the other
(after a failover too); ``resync-config``'s push sends both buckets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailcore.bus import mirror_directory
from mailcore.credentials import Credentials
from mailcore.directory import Directory
from tests.conftest import fresh_bus
from tests.support.daemons import NatsServer


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(500):  # a guard against a hang, not a timing assertion
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def test_follow_carries_users_and_their_hashes(tmp_path: Path) -> None:
    a, b = NatsServer(tmp_path / "a"), NatsServer(tmp_path / "b")
    a.start()
    b.start()
    bus_a, bus_b = await fresh_bus(a.url), await fresh_bus(b.url)
    stopping = asyncio.Event()
    # what services/mirror/app.py runs on side B: one follow of A per bucket
    follows = [
        asyncio.create_task(mirror_directory.follow(bus_b.js, bus_a.js, "a", stopping, bucket))
        for bucket in mirror_directory.BUCKETS
    ]
    dir_a = await Directory.open(bus_a.js)
    dir_b = await Directory.open(bus_b.js, passwords=True)
    try:
        await dir_a.add_domain("pair.test")
        made = await dir_a.add_user("kim@pair.test", "password-one")

        async def logs_in(password: str) -> bool:
            return await dir_b.authenticate("kim@pair.test", password) is not None

        await until(lambda: logs_in("password-one"), "the user and the hash on B")
        user = dir_b.user("kim@pair.test")
        assert user is not None and user.account_id == made.account_id
        await dir_a.set_password("kim@pair.test", "password-two")
        await until(lambda: logs_in("password-two"), "the new password on B")
        assert not await logs_in("password-one")
        await dir_a.remove_user("kim@pair.test")

        async def gone() -> bool:
            creds = await Credentials.open(bus_b.js, watch=False)
            return dir_b.user("kim@pair.test") is None and creds.hash_of("kim@pair.test") is None

        await until(gone, "the user and the hash gone from B")
        # resync-config (no mirror following): B's buckets become A's, hashes included
        stopping.set()
        await asyncio.gather(*follows)
        await dir_a.add_user("lou@pair.test", "password-lou")
        await dir_b.add_user("stray@pair.test", "password-stray")
        written, deleted = await mirror_directory.push_all(bus_a.js, bus_b.js)
        assert (written, deleted) == (2, 2)  # lou and lou's hash; stray and stray's hash
        check = await Directory.open(bus_b.js, watch=False, passwords=True)
        assert (await check.authenticate("lou@pair.test", "password-lou")) is not None
        assert check.user("stray@pair.test") is None
        assert await check.authenticate("stray@pair.test", "password-stray") is None
    finally:
        stopping.set()
        await asyncio.gather(*follows, return_exceptions=True)
        await dir_a.close()
        await dir_b.close()
        await bus_a.close()
        await bus_b.close()
        a.stop()
        b.stop()
