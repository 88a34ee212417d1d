"""Per-client-address limits: open connections, and failed logins over a time window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class ConnectionLimiter:
    """At most ``limit`` open sessions per client address."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, ip: str) -> bool:
        count = self._open.get(ip, 0)
        if count >= self.limit:
            return False
        self._open[ip] = count + 1
        return True

    def release(self, ip: str) -> None:
        count = self._open.get(ip, 0) - 1
        if count > 0:
            self._open[ip] = count
        else:
            self._open.pop(ip, None)

    def open_for(self, ip: str) -> int:
        return self._open.get(ip, 0)


class AuthThrottle:
    """Failed logins per client address within ``window`` seconds; at ``max_failures`` the
    address may not try again until old failures age out. Every failure also costs the
    client ``delay`` seconds before it hears the answer."""

    MAX_TRACKED = 100_000

    def __init__(
        self,
        max_failures: int,
        window: float,
        delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.delay = delay
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, ip: str) -> deque[float] | None:
        times = self._failures.get(ip)
        if times is None:
            return None
        cutoff = self._clock() - self.window
        while times and times[0] < cutoff:
            times.popleft()
        if not times:
            del self._failures[ip]
            return None
        return times

    def blocked(self, ip: str) -> bool:
        times = self._recent(ip)
        return times is not None and len(times) >= self.max_failures

    def record_failure(self, ip: str) -> None:
        if len(self._failures) >= self.MAX_TRACKED:
            self._prune()
        times = self._recent(ip)
        if times is None:
            times = self._failures[ip] = deque(maxlen=self.max_failures)
        times.append(self._clock())

    def _prune(self) -> None:
        for ip in list(self._failures):
            self._recent(ip)
        if len(self._failures) >= self.MAX_TRACKED:  # still full: forget the oldest half
            for ip in list(self._failures)[: self.MAX_TRACKED // 2]:
                del self._failures[ip]
