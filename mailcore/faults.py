"""Crash points for the reliability suite: ``POSTERN_FAULT_POINT=name[@n]`` makes a process
SIGKILL itself the ``n``-th time (default: first) it passes the point ``name``.

Off by default: with the variable unset, :func:`crash_point` is one dictionary-free
comparison. Only ``make reliability`` sets it, on processes it starts itself, to kill a
service at an exact step of a transaction (after the scan, between the PubAck and the 250,
between the store's commit and its ack, ...). The names live in :data:`POINTS` so a typo in
a scenario fails loudly instead of never firing.
"""

from __future__ import annotations

import os
import signal

ENV = "POSTERN_FAULT_POINT"

POINTS = frozenset(
    {
        "filter.after_scan",  # screened and stamped, nothing published yet
        "filter.during_publish",  # the publish is on its way, the PubAck not yet read
        "filter.after_puback",  # JetStream has it, the client has no 250 yet
        "filter.after_250",  # the client has its 250
        "store.before_commit",  # fetched from the bus, nothing committed
        "store.after_commit",  # committed to disk, not acked to the bus
        "store.after_ack",  # committed and acked
    }
)


class FaultSpecError(ValueError):
    """``POSTERN_FAULT_POINT`` names no known point or has a bad count."""


def parse(spec: str) -> tuple[str, int] | None:
    """``"filter.after_scan@3"`` -> ``("filter.after_scan", 3)``; ``""`` -> None."""
    spec = spec.strip()
    if not spec:
        return None
    name, _, count = spec.partition("@")
    if name not in POINTS:
        raise FaultSpecError(f"{ENV}: unknown fault point {name!r}")
    try:
        n = int(count) if count else 1
    except ValueError:
        raise FaultSpecError(f"{ENV}: bad count {count!r}") from None
    if n < 1:
        raise FaultSpecError(f"{ENV}: count must be >= 1, got {n}")
    return name, n


_armed = parse(os.environ.get(ENV, ""))
_hits = 0


def crash_point(name: str) -> None:
    """SIGKILL this process when ``name`` is the armed point and its count is reached."""
    global _hits
    if _armed is None or _armed[0] != name:
        return
    _hits += 1
    if _hits >= _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def arm(spec: str) -> None:
    """Re-arm from a spec (tests); ``""`` disarms."""
    global _armed, _hits
    _armed, _hits = parse(spec), 0


def crash_soon(name: str, delay: float = 0.0005) -> None:
    """Arm a timer that passes ``name`` after ``delay`` seconds on the running loop: for a
    point inside an awaited call (a publish on its way, its PubAck not yet read)."""
    if _armed is None or _armed[0] != name:
        return
    import asyncio

    asyncio.get_running_loop().call_later(delay, crash_point, name)
