"""Per-address connection limits and the failed-login throttle."""

from __future__ import annotations

from services.filter.throttle import AuthThrottle, ConnectionLimiter


def test_connection_limiter() -> None:
    limiter = ConnectionLimiter(2)
    assert limiter.acquire("192.0.2.1") and limiter.acquire("192.0.2.1")
    assert not limiter.acquire("192.0.2.1")
    assert limiter.acquire("192.0.2.2")
    limiter.release("192.0.2.1")
    assert limiter.acquire("192.0.2.1")
    limiter.release("192.0.2.1")
    limiter.release("192.0.2.1")
    assert limiter.open_for("192.0.2.1") == 0


def test_auth_throttle_window() -> None:
    now = [1000.0]
    throttle = AuthThrottle(max_failures=3, window=60, delay=0, clock=lambda: now[0])
    for _ in range(2):
        throttle.record_failure("192.0.2.9")
    assert not throttle.blocked("192.0.2.9")
    throttle.record_failure("192.0.2.9")
    assert throttle.blocked("192.0.2.9")
    assert not throttle.blocked("192.0.2.10")
    now[0] += 61
    assert not throttle.blocked("192.0.2.9")


def test_auth_throttle_memory_is_bounded() -> None:
    throttle = AuthThrottle(max_failures=3, window=60, delay=0)
    throttle.MAX_TRACKED = 100
    for i in range(1000):
        throttle.record_failure(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) <= 100
