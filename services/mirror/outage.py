"""An outage of something a mirror loop needs (the peer's NATS, the local store, the
peer's queue): retried with backoff, logged once.

The first failure of an outage is one warning line that says what is away and when the
next try comes (``peer store-b unreachable, retrying in 0.5s``); the tries after it wait
longer each time (doubled, up to a cap) and log nothing — no traceback, no line per try;
the first success after it is one info line (``… reachable again``, with how long it
lasted and how many tries it took). A loop whose failures follow from another outage
already reported (everything behind the peer link while the link is down) is ``quiet``:
it backs off the same way but logs neither line.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mailcore.logging import get_logger

log = get_logger("mirror")

FIRST = 0.5  # seconds before the first retry
CAP = 10.0  # the longest pause between two tries


def describe(exc: BaseException | str) -> str:
    """One short line for an error (never a traceback)."""
    if isinstance(exc, str):
        return exc[:300]
    text = str(exc).strip()
    name = type(exc).__name__
    return (f"{name}: {text}" if text and text != name else name)[:300]


class Outage:
    def __init__(
        self,
        down: str,
        back: str,
        *,
        first: float = FIRST,
        cap: float = CAP,
        quiet: Callable[[], bool] | None = None,
        **context: str,
    ) -> None:
        self.down, self.back = down, back  # "peer store-b unreachable", "… reachable again"
        self.first, self.cap = first, cap
        self.quiet = quiet
        self.context = context
        self.failures = 0  # tries failed in this outage (0: none going on)
        self.since: float | None = None  # when it began (time.time())
        self.last_error: str | None = None
        self._logged = False

    @property
    def going_on(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException | str) -> float:
        """Count a failed try; the seconds to wait before the next one."""
        delay = min(self.cap, self.first * 2 ** min(self.failures, 30))
        if self.failures == 0:
            self.since = time.time()
        self.failures += 1
        self.last_error = describe(exc)
        if not self._logged and not (self.quiet is not None and self.quiet()):
            log.warning(
                f"{self.down}, retrying in {delay:g}s",
                error=self.last_error,
                retry_in=delay,
                **self.context,
            )
            self._logged = True
        return delay

    def ok(self) -> None:
        """A try succeeded: the outage (if any) is over."""
        if self.failures and self._logged:
            log.info(
                self.back,
                down_for=round(time.time() - (self.since or time.time()), 1),
                tries=self.failures,
                **self.context,
            )
        self.failures, self.since, self._logged = 0, None, False


__all__ = ["CAP", "FIRST", "Outage", "describe"]
