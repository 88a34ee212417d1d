"""Login policy: plaintext rules, failure delays and throttling, connection caps."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from services.store.auth import (
    Authenticator,
    AuthRefused,
    ConnectionLimiter,
    LoginThrottle,
    PlaintextPolicy,
    Refusal,
)


def test_plaintext_policy() -> None:
    assert not PlaintextPolicy("never").allows("127.0.0.1", tls=False)
    assert PlaintextPolicy("never").allows("192.0.2.1", tls=True)
    assert PlaintextPolicy("loopback").allows("127.0.0.1", tls=False)
    assert PlaintextPolicy("loopback").allows("::1", tls=False)
    assert not PlaintextPolicy("loopback").allows("192.0.2.1", tls=False)
    assert not PlaintextPolicy("loopback").allows("not-an-ip", tls=False)
    assert PlaintextPolicy("always").allows("192.0.2.1", tls=False)


def test_throttle_delays_grow_and_block() -> None:
    t = LoginThrottle(0.5, max_per_ip=4, max_per_account=3)
    assert t.delay_for("192.0.2.1", "a@x.test") == 0
    assert t.record_failure("192.0.2.1", "a@x.test") == 0.5
    assert t.record_failure("192.0.2.1", "A@x.test") == 1.0  # account names fold case
    assert not t.blocked("192.0.2.1", "a@x.test")
    t.record_failure("192.0.2.1", "a@x.test")
    assert t.blocked("192.0.2.1", "a@x.test")  # account limit
    assert not t.blocked("192.0.2.9", "b@x.test")
    t.record_failure("192.0.2.1", "c@x.test")
    assert t.blocked("192.0.2.1", "d@x.test")  # peer limit
    t.record_success("192.0.2.9", "a@x.test")
    assert not t.blocked("192.0.2.9", "a@x.test")


def test_throttle_window_expires() -> None:
    t = LoginThrottle(0.1, max_per_account=1, window=0.05)
    t.record_failure("192.0.2.1", "a@x.test")
    assert t.blocked("192.0.2.1", "a@x.test")
    time.sleep(0.06)
    assert not t.blocked("192.0.2.1", "a@x.test")


def test_connection_limiter() -> None:
    lim = ConnectionLimiter(max_per_ip=2, max_per_user=1)
    assert lim.open_ip("a") and lim.open_ip("a")
    assert not lim.open_ip("a")
    lim.close_ip("a")
    assert lim.open_ip("a")
    assert lim.open_user("u") and not lim.open_user("u")
    lim.close_user("u")
    assert lim.open_user("u")


@pytest.fixture
async def authenticator(bus: Bus) -> AsyncIterator[Authenticator]:
    d = await Directory.open(bus.js, passwords=True)
    await d.add_domain("example.com")
    await d.add_user("alice@example.com", "correct horse")
    yield Authenticator(
        d,
        policy=PlaintextPolicy("loopback"),
        throttle=LoginThrottle(0.05, max_per_account=3),
        protocol="imap",
    )
    await d.close()


async def test_login_paths(authenticator: Authenticator) -> None:
    user = await authenticator.login(
        "alice@example.com", "correct horse", peer_ip="127.0.0.1", tls=False
    )
    assert user.address == "alice@example.com"
    with pytest.raises(AuthRefused) as exc:
        await authenticator.login(
            "alice@example.com", "correct horse", peer_ip="192.0.2.1", tls=False
        )
    assert exc.value.reason is Refusal.PLAINTEXT
    for _ in range(3):
        with pytest.raises(AuthRefused) as exc:
            await authenticator.login("alice@example.com", "nope", peer_ip="127.0.0.1", tls=True)
        assert exc.value.reason is Refusal.FAILED
    # the unknown user gets the same refusal as the wrong password
    with pytest.raises(AuthRefused) as exc:
        await authenticator.login("ghost@example.com", "nope", peer_ip="127.0.0.2", tls=True)
    assert exc.value.reason is Refusal.FAILED
    # after three failures the account is throttled even with the right password
    with pytest.raises(AuthRefused) as exc:
        await authenticator.login(
            "alice@example.com", "correct horse", peer_ip="127.0.0.3", tls=True
        )
    assert exc.value.reason is Refusal.THROTTLED


def test_throttle_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.store.auth as auth

    monkeypatch.setattr(auth, "MAX_TRACKED", 100)
    monkeypatch.setattr(auth, "SWEEP_EVERY", 10)
    t = LoginThrottle(0.0)
    for i in range(1000):
        # hostile, ever-new, long login names from ever-new peers
        t.record_failure(f"192.0.2.{i % 250}.{i}", f"{i}" + "x" * 60_000)
    assert len(t._by_ip) <= 100 + 10
    assert len(t._by_account) <= 100 + 10
    assert all(len(k) == 16 for k in t._by_account)


def test_throttle_sweeps_expired_entries() -> None:
    t = LoginThrottle(0.0, window=0.01)
    for i in range(300):
        t.record_failure(f"198.51.100.{i}", f"user{i}@x.test")
    time.sleep(0.02)
    t._sweep()
    assert t.tracked == 0
