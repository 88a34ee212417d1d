"""Searches that read message files: fair between users (one running scan per account,
a few server-wide), bounded in time (NO [LIMIT]), stopped when the client goes away.

The scans are made slow on purpose by wrapping the engine's per-message matcher: either
blocked on an event the test controls, or sleeping a little per message, so whether a
scan *could* have finished is decided by the structure of the test, not by the speed of
the machine. Counts of messages the matcher saw are the evidence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from mailcore.mailstore import matcher
from tests.services.store.imap.conftest import PASSWORD, ImapHarness, Line, message

BOB = "bob@example.com"
HANG_GUARD = 120.0


@dataclass
class SlowMatcher:
    """Wraps ``matcher.matches``; messages of accounts in ``hold`` wait for ``release``,
    those in ``slow`` sleep ``delay`` seconds each."""

    original: Callable[..., bool]
    release: threading.Event = field(default_factory=threading.Event)
    hold: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)
    delay: float = 0.05
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, key: object, cand: matcher.Candidate) -> bool:
        path = str(cand.path)
        account = next((a for a in self.hold | self.slow if f"/{a}/" in path), None)
        if account is not None:
            with self.lock:
                self.seen[account] = self.seen.get(account, 0) + 1
            if account in self.hold:
                assert self.release.wait(HANG_GUARD), "test never released the scan"
            else:
                time.sleep(self.delay)
        return self.original(key, cand)

    def count(self, account: str) -> int:
        with self.lock:
            return self.seen.get(account, 0)


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowMatcher]:
    m = SlowMatcher(matcher.matches)
    monkeypatch.setattr(matcher, "matches", m)
    yield m
    m.release.set()


async def _login(h: ImapHarness, address: str) -> Line:
    c = await h.raw()
    reply = await c.cmd(f'L LOGIN {address} "{PASSWORD}"'.encode())
    assert reply[-1].startswith(b"L OK"), reply
    assert (await c.cmd(b"S SELECT INBOX"))[-1].startswith(b"S OK")
    return c


async def _wait_for(cond: Callable[[], bool], what: str) -> None:
    import asyncio

    for _ in range(int(HANG_GUARD * 100)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_one_users_long_scan_does_not_block_another_user(
    imap: ImapHarness, slow: SlowMatcher
) -> None:
    import asyncio

    await imap.add_user(BOB)
    await imap.deliver(*[message(i) for i in range(5)])
    await imap.deliver(*[message(i) for i in range(5)], address=BOB)
    alice_id = imap.users["alice@example.com"].account_id
    slow.hold.add(alice_id)
    a1, a2, b = (
        await _login(imap, "alice@example.com"),
        await _login(imap, "alice@example.com"),
        await _login(imap, BOB),
    )
    # alice's scan starts and blocks inside the engine
    first = asyncio.create_task(a1.cmd(b"A1 UID SEARCH BODY second", timeout=HANG_GUARD))
    await _wait_for(lambda: slow.count(alice_id) == 1, "alice's scan started")
    # her second session's scan queues behind her own (one per account)…
    second = asyncio.create_task(a2.cmd(b"A2 UID SEARCH TEXT line", timeout=HANG_GUARD))
    await _wait_for(lambda: imap.rt.searches.granted == 1 and not second.done(), "queued")
    # …while bob's scan runs and answers at once
    reply = await b.cmd(b"B1 UID SEARCH BODY second", timeout=60)
    assert reply == [b"* SEARCH 1 2 3 4 5\r\n", b"B1 OK UID SEARCH completed\r\n"]
    assert not first.done() and not second.done()
    assert slow.count(alice_id) == 1  # her second scan never started
    slow.release.set()
    assert (await first)[-1].startswith(b"A1 OK")
    assert (await second)[-1].startswith(b"A2 OK")
    assert imap.rt.searches.running == 0
    for c in (a1, a2, b):
        await c.close()


async def test_a_scan_past_its_deadline_answers_limit(imap: ImapHarness, slow: SlowMatcher) -> None:
    n = 100
    await imap.deliver(*[message(i) for i in range(n)])
    alice_id = imap.users["alice@example.com"].account_id
    slow.slow.add(alice_id)  # 0.05 s per message: the scan needs 5 s at the very least
    imap.rt.search_timeout = 0.5
    c = await _login(imap, "alice@example.com")
    reply = await c.cmd(b"T UID SEARCH BODY second", timeout=HANG_GUARD)
    assert len(reply) == 1 and reply[0].startswith(b"T NO [LIMIT]"), reply
    seen = slow.count(alice_id)
    assert 0 < seen < n  # stopped part-way, and the reply came after it stopped:
    assert imap.rt.searches.running == 0
    # the session goes on, and a search of the index alone has no deadline problem
    reply = await c.cmd(b"U UID SEARCH FROM sender")
    assert reply[-1].startswith(b"U OK")
    assert slow.count(alice_id) == seen
    await c.close()


async def test_a_scan_stops_when_the_client_disconnects(
    imap: ImapHarness, slow: SlowMatcher
) -> None:
    n = 100
    await imap.deliver(*[message(i) for i in range(n)])
    alice_id = imap.users["alice@example.com"].account_id
    slow.slow.add(alice_id)
    c = await _login(imap, "alice@example.com")
    await c.send(b"T UID SEARCH BODY second\r\n")
    await _wait_for(lambda: slow.count(alice_id) > 0, "scan started")
    await c.close()
    await _wait_for(lambda: imap.server.open_sessions == 0, "session ended")
    assert slow.count(alice_id) < n  # the whole scan would have taken 5 s
    assert imap.rt.searches.running == 0
    # the user's slot is free again for the next session
    slow.slow.clear()
    c2 = await _login(imap, "alice@example.com")
    reply = await c2.cmd(b"T2 UID SEARCH BODY second", timeout=60)
    assert reply[-1].startswith(b"T2 OK")
    await c2.close()
