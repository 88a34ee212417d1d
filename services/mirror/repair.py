"""The scheduled repair pass: a resync-fast toward the peer every
``POSTERN_MIRROR_REPAIR_INTERVAL`` seconds (default 30 days; 0: never).

One side of a pair repairs the other, never both at once (each would make the other like
itself): the **master** repairs the slave (:func:`runs_here`, the roles of
mailcore.bus.roles, read afresh before every look at the schedule), so after ``mailctl
mirror promote`` the new master repairs the new slave and the old master stops. A pair
without roles (``POSTERN_MIRROR_ROLE`` unset) falls back to the first node in name order
(``store-a`` of ``store-a``/``store-b``), as do two masters at one epoch (a configuration
error the status shows; the name order keeps them from repairing each other). It waits
until nothing is queued either way, so
it compares settled state, and when it is due it runs :class:`Resync` (kind ``fast``),
then reports what it fixed: a log line ``mirror repair pass``, the counters
``postern_mirror_repair_fixed_total{peer,kind}`` and ``postern_mirror_repair_runs_total``
and the record ``repair.<peer>`` of the KV bucket ``MIRROR_STATUS`` (last run, what it
fixed, next due), which ``mailctl mirror status`` shows. The schedule lives in that
record too, so a restart of the mirror does not restart the clock.
"""

from __future__ import annotations

import time
from typing import Any

from mailcore import metrics
from mailcore.bus import mirror as queue
from mailcore.bus import roles
from mailcore.bus.mirror_resync import Resync, StoreLink, queues_empty
from mailcore.bus.mirror_resync import status_key as resync_key
from mailcore.logging import get_logger

log = get_logger("mirror")

BUSY = 60.0  # seconds: a resync record that moved more recently is a resync at work


def status_key(peer: str) -> str:
    return f"repair.{peer}"


def runs_here(
    node: str, peer: str, own: roles.RoleRecord | None, theirs: roles.RoleRecord | None
) -> bool:
    """Whether this side's mirror runs the pass now: on the master, whatever its name."""
    if own is None or theirs is None or own.role == theirs.role:
        return node < peer  # no roles (or a half-configured pair, or two masters)
    return own.role == roles.MASTER


def not_here_note(own: roles.RoleRecord | None) -> str:
    """What the status says while the pass is left to the peer."""
    if own is not None and own.role == roles.SLAVE:
        return "slave: the master repairs"
    return "the peer repairs (first node in name order)"


async def note_not_here(js: Any, peer_name: str, why: str) -> None:
    """Mark this side's schedule record as not running here (written only when it changes)."""
    record = await queue.read_status(js, status_key(peer_name))
    if record and record.get("not_here") != why:
        record["not_here"] = why
        await queue.write_status(js, status_key(peer_name), record)


def check_every(interval: float) -> float:
    """Seconds between looks at the schedule."""
    return min(30.0, max(0.5, interval / 2))


async def maybe_run(
    local: StoreLink, peer: StoreLink, node: str, peer_name: str, interval: float
) -> dict[str, Any] | None:
    """Run the pass when it is due (and the queues are empty); its record, or None."""
    now = time.time()
    record = await queue.read_status(local.js, status_key(peer_name))
    if not record:
        record = {"since": now, "runs": 0}
    if record.pop("not_here", None) is not None:  # this side repairs again (a promote)
        await queue.write_status(local.js, status_key(peer_name), record)
    # due ``interval`` after the last run (or the first look): a changed setting counts
    due = float(record.get("last_run") or record.get("since") or now) + interval
    if record.get("next_due") != due:
        record["next_due"] = due
        await queue.write_status(local.js, status_key(peer_name), record)
    if now < due:
        return None
    if not await queues_empty(local.js, peer.js, node, peer_name):
        return None  # replication is moving: compare once it settled
    for js, toward in ((local.js, peer_name), (peer.js, node)):  # from either side
        running = await queue.read_status(js, resync_key(toward))
        if running.get("state") == "running" and now - float(running.get("updated_at", 0)) < BUSY:
            return None  # a `mailctl mirror resync*` (or the other side's pass) is at work
    resync = Resync(local, peer, node, peer_name)
    try:
        await resync.run("fast", resume=False)
    except Exception as exc:
        metrics.MIRROR_REPAIR_RUNS.labels(peer=peer_name, outcome="failed").inc()
        record.update(last_error=f"{type(exc).__name__}: {exc}"[:300], last_failed=time.time())
        await queue.write_status(local.js, status_key(peer_name), record)
        raise
    fixes = resync.progress.fixes
    for kind, n in fixes.items():
        metrics.MIRROR_REPAIR_FIXED.labels(peer=peer_name, kind=kind).inc(n)
    metrics.MIRROR_REPAIR_RUNS.labels(peer=peer_name, outcome="ok").inc()
    record = {
        "since": record.get("since", now),
        "last_run": now,
        "finished": time.time(),
        "fixed": resync.fixes.messages,
        "fixes": fixes,
        "runs": int(record.get("runs", 0)) + 1,
        "fixed_total": int(record.get("fixed_total", 0)) + resync.fixes.messages,
        "next_due": now + interval,
    }
    await queue.write_status(local.js, status_key(peer_name), record)
    log.info("mirror repair pass", peer=peer_name, fixed=resync.fixes.messages, **fixes)
    return record


__all__ = [
    "check_every",
    "maybe_run",
    "not_here_note",
    "note_not_here",
    "runs_here",
    "status_key",
]
