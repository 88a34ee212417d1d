"""Typed outcomes of one delivery attempt, shared by the store's delivery consumer and
the outbound relay (maddy's style: an error carries its SMTP code and whether it is
temporary, so a caller never parses text to decide between retrying and giving up).

* :class:`Delivered` — done: the bus message is acked;
* :class:`Deferred` — a temporary failure: tried again at ``next_attempt`` (a Unix time);
* :class:`Failed` — a permanent failure: no retry will help (the store dead-letters, the
  relay bounces).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


class DeliveryError(Exception):
    """A failure with an SMTP reply code (RFC 5321 §4.2), an enhanced status code
    (RFC 3463) and the temporary flag: 4xx and connection failures are temporary."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        enhanced: str = "",
        temporary: bool | None = None,
        remote: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.enhanced = enhanced or ("4.0.0" if code < 500 else "5.0.0")
        self.temporary = (code < 500) if temporary is None else temporary
        self.remote = remote  # the host that answered, when one did

    @property
    def reply(self) -> str:
        """The answer as one line, e.g. ``550 5.1.1 no such user``."""
        text = " ".join(self.message.split())
        return f"{self.code} {self.enhanced} {text}".strip()

    def __str__(self) -> str:
        return self.reply


@dataclass(frozen=True, slots=True)
class Delivered:
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Deferred:
    reason: str
    next_attempt: float

    @property
    def delay(self) -> float:
        """Seconds from now until the next attempt (never negative)."""
        return max(0.0, self.next_attempt - time.time())

    @classmethod
    def after(cls, reason: str, seconds: float) -> Deferred:
        return cls(reason, time.time() + seconds)


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str
    error: DeliveryError | None = None


Outcome = Delivered | Deferred | Failed


def backoff(schedule: list[float] | tuple[float, ...], attempt: int) -> float:
    """The delay after the ``attempt``-th failed attempt (1-based): the schedule's entry,
    its last entry once the attempts outrun it."""
    if not schedule:
        return 0.0
    return float(schedule[min(max(attempt, 1), len(schedule)) - 1])
