"""The shared failed-login policy on a real NATS KV bucket: delays grow per (account,
address) and per address, nobody can lock an account out for other addresses, and two
guards (two processes, or one before and after a restart) see the same counts."""

from __future__ import annotations

from mailcore.bus.connect import Bus
from mailcore.loginguard import LoginGuard, MemoryCounts, Policy

POLICY = Policy(base_delay=1.0, max_delay=8.0, max_per_pair=4, max_per_address=9)


async def test_delays_grow_per_account_and_address(bus: Bus) -> None:
    guard = await LoginGuard.open(bus.js, POLICY)
    delays = [await guard.failed("imap", "192.0.2.1", "alice@example.org") for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    assert await guard.blocked("imap", "192.0.2.1", "alice@example.org")
    # the same account from an address without failures is not refused
    assert not await guard.blocked("pop3", "192.0.2.99", "alice@example.org")
    # another account from the busy address is slowed by the address's count, not refused
    assert not await guard.blocked("smtp", "192.0.2.1", "bob@example.org")
    # its first failure waits as the address's third: 6 failures // 3 = n 2, 2 s
    assert await guard.failed("smtp", "192.0.2.1", "bob@example.org") == 2.0


async def test_an_address_failing_for_many_accounts_is_refused(bus: Bus) -> None:
    guard = await LoginGuard.open(bus.js, POLICY)
    for i in range(9):
        await guard.failed("smtp", "198.51.100.7", f"user{i}@example.org")
    assert await guard.blocked("imap", "198.51.100.7", "someone-else@example.org")
    assert not await guard.blocked("imap", "198.51.100.8", "user1@example.org")


async def test_counts_are_shared_and_survive_a_restart(bus: Bus) -> None:
    filter_guard = await LoginGuard.open(bus.js, POLICY)
    store_guard = await LoginGuard.open(bus.js, POLICY)
    for _ in range(4):
        await filter_guard.failed("smtp", "203.0.113.5", "carol@example.org")
    assert await store_guard.blocked("imap", "203.0.113.5", "carol@example.org")
    restarted = await LoginGuard.open(bus.js, POLICY)
    assert await restarted.blocked("pop3", "203.0.113.5", "CAROL@example.org")  # any case
    # a success from that address forgets its failures for that account
    await restarted.succeeded("203.0.113.5", "carol@example.org")
    assert not await store_guard.blocked("imap", "203.0.113.5", "carol@example.org")


async def test_memory_counts_follow_the_same_policy() -> None:
    guard = LoginGuard(MemoryCounts(), POLICY)
    for _ in range(4):
        await guard.failed("imap", "::1", "dave@example.org")
    assert await guard.blocked("imap", "::1", "dave@example.org")
    assert not await guard.blocked("imap", "::2", "dave@example.org")


async def test_a_failure_the_store_counted_is_not_counted_twice() -> None:
    webmail = LoginGuard(MemoryCounts(), POLICY)
    store = LoginGuard(webmail.counts, POLICY)  # the same bucket, another process
    before = await webmail.failures("192.0.2.4", "dave@example.org")
    await store.failed("imap", "192.0.2.4", "dave@example.org")  # believed x-originating-ip
    assert await webmail.failed_upstream("webmail", "192.0.2.4", "dave@example.org", before) == 0
    assert await webmail.failures("192.0.2.4", "dave@example.org") == 1
    # a store that did not count it (it did not believe the node): the node counts it
    before = await webmail.failures("192.0.2.4", "dave@example.org")
    assert await webmail.failed_upstream("webmail", "192.0.2.4", "dave@example.org", before) == 2.0
    assert await webmail.failures("192.0.2.4", "dave@example.org") == 2
