"""The scheduled repair pass: a resync-fast toward the peer every
``POSTERN_MIRROR_REPAIR_INTERVAL`` seconds (default 30 days; 0: never).

One side of a pair repairs the other, never both at once (each would make the other like
itself): the pass runs in the mirror of the pair's first node in name order
(``store-a`` of ``store-a``/``store-b``). It waits until nothing is queued either way, so
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
from mailcore.bus.mirror_resync import Resync, StoreLink, queues_empty
from mailcore.bus.mirror_resync import status_key as resync_key
from mailcore.logging import get_logger

log = get_logger("mirror")

BUSY = 60.0  # seconds: a resync record that moved more recently is a resync at work


def status_key(peer: str) -> str:
    return f"repair.{peer}"


def runs_here(node: str, peer: str, interval: float) -> bool:
    return interval > 0 and node < peer


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
    # due ``interval`` after the last run (or the first look): a changed setting counts
    due = float(record.get("last_run") or record.get("since") or now) + interval
    if record.get("next_due") != due:
        record["next_due"] = due
        await queue.write_status(local.js, status_key(peer_name), record)
    if now < due:
        return None
    if not await queues_empty(local.js, peer.js, node, peer_name):
        return None  # replication is moving: compare once it settled
    running = await queue.read_status(local.js, resync_key(peer_name))
    if running.get("state") == "running" and now - float(running.get("updated_at", 0)) < BUSY:
        return None  # a `mailctl mirror resync*` is at work
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


__all__ = ["check_every", "maybe_run", "runs_here", "status_key"]
