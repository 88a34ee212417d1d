"""The directory (and the settings kept in it) on both stores of a pair.

The directory is not in the store's journal: it is the KV bucket ``DIRECTORY`` on each
store's own NATS (domains, users with their account ids and password hashes, aliases,
DKIM keys, quotas: mailcore/directory.py). Two ways it reaches the peer:

* :func:`push_all` (``mailctl mirror resync-config``): this side is the truth: every key
  whose value differs is written on the peer, every key the peer has and this side has
  not is deleted there;
* :func:`follow` (the mirror process, always): the peer's bucket is watched over the peer
  link and each change applied here when it is newer than what is here (last writer wins,
  by the servers' timestamps of the writes). An equal value is never written again, so a
  change copied to the peer by its mirror is not copied back: no loop. Both mirrors
  follow their peer, so a user added or changed on either store can log in on both.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from nats.js.errors import NotFoundError

from mailcore import metrics
from mailcore.bus import kvwatch, names
from mailcore.logging import get_logger

log = get_logger("mirror")

STREAM = f"KV_{names.KV_DIRECTORY}"


def _seconds(when: Any) -> float:
    if isinstance(when, datetime.datetime):
        return when.timestamp()
    return float(when or 0)


async def live_entries(js: Any) -> dict[str, bytes]:
    """Every live key of the bucket on this server and its value."""
    kv = await js.key_value(names.KV_DIRECTORY)
    last = await kvwatch.last_revision(js, names.KV_DIRECTORY)
    watcher: Any = await kv.watchall()
    try:
        found = await kvwatch.initial_values(watcher, last)
    finally:
        await watcher.stop()
    return {key: bytes(e.value or b"") for key, e in found.items()}


async def last_write(js: Any, key: str) -> tuple[bytes | None, float]:
    """The key's value here (None: absent or deleted) and when it was last written."""
    try:
        msg = await js.get_msg(STREAM, subject=f"$KV.{names.KV_DIRECTORY}.{key}")
    except NotFoundError:
        return None, 0.0
    op = (msg.headers or {}).get("KV-Operation")
    value = None if op in kvwatch.DELETE_OPERATIONS else bytes(msg.data or b"")
    return value, _seconds(msg.time)


async def push_all(local_js: Any, peer_js: Any) -> tuple[int, int]:
    """The peer's bucket becomes this one: (keys written, keys deleted) there."""
    mine, theirs = await live_entries(local_js), await live_entries(peer_js)
    kv = await peer_js.key_value(names.KV_DIRECTORY)
    written = deleted = 0
    for key, value in sorted(mine.items()):
        if theirs.get(key) != value:
            await kv.put(key, value)
            written += 1
    for key in sorted(set(theirs) - set(mine)):
        await kv.delete(key)
        deleted += 1
    return written, deleted


async def apply_entry(local_js: Any, key: str, value: bytes | None, at: float) -> bool:
    """The peer's write of ``key`` (``value`` None: a delete) at ``at``, applied here when
    newer than this store's own; True when something was written."""
    here, written_at = await last_write(local_js, key)
    if here == value or written_at >= at:
        return False
    kv = await local_js.key_value(names.KV_DIRECTORY)
    if value is None:
        await kv.delete(key)
    else:
        await kv.put(key, value)
    return True


async def follow(local_js: Any, peer_js: Any, peer: str, stopping: asyncio.Event) -> None:
    """Apply the peer's directory changes here until ``stopping`` (see the docstring)."""
    kv = await peer_js.key_value(names.KV_DIRECTORY)
    watcher: Any = await kv.watchall()
    try:
        while not stopping.is_set():
            try:
                entry = await watcher.updates(timeout=1.0)
            except Exception as exc:  # nats-py's timeout: nothing new
                if "Timeout" in type(exc).__name__:
                    continue
                raise
            if entry is None or not hasattr(entry, "key"):
                continue
            value = None if entry.operation in kvwatch.DELETE_OPERATIONS else entry.value
            if await apply_entry(local_js, entry.key, value, _seconds(entry.created)):
                metrics.MIRROR_DIRECTORY_APPLIED.labels(peer=peer).inc()
                log.info("directory change from the peer applied", peer=peer, key=entry.key)
    finally:
        await watcher.stop()


__all__ = ["apply_entry", "follow", "last_write", "live_entries", "push_all"]
