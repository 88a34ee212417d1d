"""Disk budgets for ``mailctl up``: how much of the data file system JetStream may use, and
each stream's share of it.

NATS refuses a stream whose ``max_bytes`` do not fit in what JetStream may use (error
10047, "insufficient storage resources"); without ``max_file_store`` it allows 75 % of the
free space at start. The default stream budgets add up to 15 GiB, so on a small disk the
cluster would not start. Here the budgets are sized from the free space instead:

* JetStream gets ``POSTERN_JETSTREAM_MAX_BYTES`` when set, else half of the free space
  (what the store directory already holds counted as free), but no more than the stream
  budgets need. The rest of the file system is a reserve: JetStream never fills the disk
  (a full disk switches JetStream off, issue 19), and the mail store beside it keeps room.
* Stream budgets the operator did not set are scaled down to fit 90 % of that (the rest is
  for the KV buckets), none below :data:`STREAM_FLOOR`; explicitly set ones are kept.
* Below :data:`JETSTREAM_FLOOR` there is not enough disk to run at all: one line says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mailcore.config import CommonSettings, env_name

MiB = 1024**2
JETSTREAM_FLOOR = 256 * MiB
STREAM_FLOOR = 16 * MiB
STREAM_SHARE = 0.9  # of JetStream's budget for the streams; the rest for KV buckets
FREE_SHARE = 0.5  # of the free space for JetStream by default
STREAM_FIELDS = (
    "inbound_max_bytes",
    "outbound_max_bytes",
    "bodies_max_bytes",
    "mirror_max_bytes",
    "dead_max_bytes",
)


class BudgetError(Exception):
    """Not enough disk: the message says what to change."""


@dataclass(frozen=True)
class Budget:
    jetstream: int  # nats.conf max_file_store
    streams: dict[str, int]  # setting name -> bytes
    warning: str | None = None

    def env(self) -> dict[str, str]:
        """The children's environment: every service declares the streams with these."""
        return {f"POSTERN_{k.upper()}": str(v) for k, v in self.streams.items()}


def human(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", MiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def plan(
    settings: CommonSettings, *, free: int, jetstream_max: int = 0, where: Path | None = None
) -> Budget:
    """The budgets for a JetStream store with ``free`` bytes available to it."""
    explicit = {f: getattr(settings, f) for f in STREAM_FIELDS if f in settings.model_fields_set}
    defaults = {f: getattr(settings, f) for f in STREAM_FIELDS if f not in explicit}
    wanted = int((sum(explicit.values()) + sum(defaults.values())) / STREAM_SHARE) + MiB
    place = f" on {where}" if where is not None else ""
    if jetstream_max:
        total = jetstream_max
    else:
        total = min(wanted, int(free * FREE_SHARE))
        if total < JETSTREAM_FLOOR:
            if free * 0.75 < JETSTREAM_FLOOR:
                raise BudgetError(
                    f"only {human(free)} free{place}: JetStream needs at least "
                    f"{human(JETSTREAM_FLOOR)}; free some space or set POSTERN_DATA to a "
                    "directory on a bigger disk"
                )
            total = JETSTREAM_FLOOR
    room = int(total * STREAM_SHARE) - sum(explicit.values())
    need = sum(defaults.values())
    streams = dict(explicit)
    if need and room < need:
        factor = max(room, 0) / need
        streams |= {f: max(STREAM_FLOOR, int(v * factor)) for f, v in defaults.items()}
    else:
        streams |= defaults
    if sum(streams.values()) > total:
        names = ", ".join(env_name(type(settings), f) for f in STREAM_FIELDS)
        raise BudgetError(
            f"the stream budgets add up to {human(sum(streams.values()))} but JetStream may "
            f"use {human(total)}{place}: lower {names} or raise POSTERN_JETSTREAM_MAX_BYTES"
        )
    warning = None
    if streams != {**explicit, **defaults}:
        shown = ", ".join(
            f"{env_name(type(settings), f)}={human(streams[f])}" for f in STREAM_FIELDS
        )
        warning = (
            f"!! only {human(free)} free{place}: JetStream limited to {human(total)}, "
            f"stream budgets scaled down ({shown}); set them to override"
        )
    return Budget(jetstream=total, streams=streams, warning=warning)
