"""The directory (and the settings kept in it) and the password hashes on both stores of a
pair.

Neither is in the store's journal: they are the KV buckets ``DIRECTORY`` (domains, users
with their account ids, aliases, DKIM keys, quotas: mailcore/directory.py) and
``CREDENTIALS`` (the users' password hashes: mailcore/credentials.py) on each store's own
NATS. Both are carried the same way (:data:`BUCKETS`), each key on its own, so a login
works on either store, after a failover too. Two ways they reach the peer:

* :func:`push_all` (``mailctl mirror resync-config``): this side is the truth: every key
  whose value differs is written on the peer, every key the peer has and this side has
  not is deleted there;
* :func:`follow` (the mirror process, always, one per bucket): the peer's bucket is watched
  over the peer link and each change applied here when it is newer than what is here
  (last writer wins, by the servers' timestamps of the writes). An equal value is never
  written again, so a change copied to the peer by its mirror is not copied back: no loop.
  Both mirrors follow their peer, so a user added or changed on either store can log in
  on both.
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

BUCKETS = (names.KV_DIRECTORY, names.KV_CREDENTIALS)


def _seconds(when: Any) -> float:
    if isinstance(when, datetime.datetime):
        return when.timestamp()
    return float(when or 0)


async def live_entries(js: Any, bucket: str = names.KV_DIRECTORY) -> dict[str, bytes]:
    """Every live key of the bucket on this server and its value."""
    kv = await js.key_value(bucket)
    last = await kvwatch.last_revision(js, bucket)
    watcher: Any = await kv.watchall()
    try:
        found = await kvwatch.initial_values(watcher, last)
    finally:
        await watcher.stop()
    return {key: bytes(e.value or b"") for key, e in found.items()}


async def last_write(
    js: Any, key: str, bucket: str = names.KV_DIRECTORY
) -> tuple[bytes | None, float]:
    """The key's value here (None: absent or deleted) and when it was last written."""
    try:
        msg = await js.get_msg(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}")
    except NotFoundError:
        return None, 0.0
    op = (msg.headers or {}).get("KV-Operation")
    value = None if op in kvwatch.DELETE_OPERATIONS else bytes(msg.data or b"")
    return value, _seconds(msg.time)


async def push_all(local_js: Any, peer_js: Any) -> tuple[int, int]:
    """The peer's buckets become these: (keys written, keys deleted) there."""
    written = deleted = 0
    for bucket in BUCKETS:
        w, d = await _push(local_js, peer_js, bucket)
        written, deleted = written + w, deleted + d
    return written, deleted


async def _push(local_js: Any, peer_js: Any, bucket: str) -> tuple[int, int]:
    mine, theirs = await live_entries(local_js, bucket), await live_entries(peer_js, bucket)
    kv = await peer_js.key_value(bucket)
    written = deleted = 0
    for key, value in sorted(mine.items()):
        if theirs.get(key) != value:
            await kv.put(key, value)
            written += 1
    for key in sorted(set(theirs) - set(mine)):
        await kv.delete(key)
        deleted += 1
    return written, deleted


async def apply_entry(
    local_js: Any, key: str, value: bytes | None, at: float, bucket: str = names.KV_DIRECTORY
) -> bool:
    """The peer's write of ``key`` (``value`` None: a delete) at ``at``, applied here when
    newer than this store's own; True when something was written."""
    here, written_at = await last_write(local_js, key, bucket)
    if here == value or written_at >= at:
        return False
    kv = await local_js.key_value(bucket)
    if value is None:
        await kv.delete(key)
    else:
        await kv.put(key, value)
    return True


async def follow(
    local_js: Any,
    peer_js: Any,
    peer: str,
    stopping: asyncio.Event,
    bucket: str = names.KV_DIRECTORY,
) -> None:
    """Apply the peer's changes of ``bucket`` here until ``stopping`` (see the docstring)."""
    kv = await peer_js.key_value(bucket)
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
            if await apply_entry(local_js, entry.key, value, _seconds(entry.created), bucket):
                metrics.MIRROR_DIRECTORY_APPLIED.labels(peer=peer).inc()
                log.info("change from the peer applied", peer=peer, bucket=bucket, key=entry.key)
    finally:
        await watcher.stop()


__all__ = ["BUCKETS", "apply_entry", "follow", "last_write", "live_entries", "push_all"]
