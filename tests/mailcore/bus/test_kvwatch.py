"""A watch's initial values end at the bucket's last revision, whatever nats-py's marker says."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from mailcore.bus import kvwatch
from mailcore.bus.connect import Bus


async def _bucket(bus: Bus, name: str) -> KeyValue:
    kv = await bus.js.create_key_value(KeyValueConfig(bucket=name, history=1))
    for i in range(5):
        await kv.put(f"k{i}", b"v")
    await kv.delete("k4")
    return kv


async def _snapshot(bus: Bus, kv: KeyValue, bucket: str) -> set[str]:
    last = await kvwatch.last_revision(bus.js, bucket)
    watcher: Any = await kv.watchall()
    try:
        return set(await kvwatch.initial_values(watcher, last))
    finally:
        await watcher.stop()


async def test_every_fresh_watch_sees_every_key(bus: Bus) -> None:
    kv = await _bucket(bus, "KVWATCH_FRESH")
    # nats-py's own marker arrives before the values whenever the server pushed them before
    # the consumer info came back: its keys() came back short in CI. Each of these watches
    # must see all of them.
    for _ in range(30):
        assert await _snapshot(bus, kv, "KVWATCH_FRESH") == {"k0", "k1", "k2", "k3"}


async def test_marker_before_the_values_is_not_the_end(bus: Bus) -> None:
    # The order CI met: nats-py's "initial values done" marker ahead of the values. The real
    # watcher's queue is put in that order (the server gives no way to force the timing).
    kv = await _bucket(bus, "KVWATCH_EARLY")
    last = await kvwatch.last_revision(bus.js, "KVWATCH_EARLY")
    watcher: Any = await kv.watchall()
    try:
        real = []
        while len(real) < 5:  # the marker may come anywhere among them: it is dropped here
            if (entry := await watcher.updates(timeout=5)) is not None:
                real.append(entry)
        assert [e.key for e in real] == ["k0", "k1", "k2", "k3", "k4"]
        for entry in [None, *real]:
            watcher._updates.put_nowait(entry)
        values = await kvwatch.initial_values(watcher, last)
    finally:
        await watcher.stop()
    assert set(values) == {"k0", "k1", "k2", "k3"}


async def test_overwritten_last_key_and_empty_bucket(bus: Bus) -> None:
    kv = await _bucket(bus, "KVWATCH_OVER")
    last = await kvwatch.last_revision(bus.js, "KVWATCH_OVER")  # the delete of k4
    await kv.put("k4", b"again")  # supersedes that revision: this later one ends the wait
    watcher: Any = await kv.watchall()
    try:
        values = await kvwatch.initial_values(watcher, last)
    finally:
        await watcher.stop()
    assert values["k4"].value == b"again"
    empty = await bus.js.create_key_value(KeyValueConfig(bucket="KVWATCH_EMPTY"))
    assert await kvwatch.last_revision(bus.js, "KVWATCH_EMPTY") == 0
    assert await _snapshot(bus, empty, "KVWATCH_EMPTY") == set()


async def test_a_purged_bucket_is_empty_at_once(bus: Bus) -> None:
    # A purge leaves the stream's last_seq where it was; waiting for it would stall every
    # watch for the idle timeout (the test fixtures purge between tests: the suite doubled).
    kv = await _bucket(bus, "KVWATCH_PURGED")
    await bus.js.purge_stream("KV_KVWATCH_PURGED")
    assert await kvwatch.last_revision(bus.js, "KVWATCH_PURGED") == 0
    assert await asyncio.wait_for(_snapshot(bus, kv, "KVWATCH_PURGED"), 0.9) == set()
    await kv.put("k9", b"v")
    assert await asyncio.wait_for(_snapshot(bus, kv, "KVWATCH_PURGED"), 0.9) == {"k9"}


async def test_a_stopped_watch_is_reported(bus: Bus) -> None:
    kv = await _bucket(bus, "KVWATCH_STOP")
    watcher: Any = await kv.watchall()
    await watcher.stop()
    try:
        await asyncio.wait_for(kvwatch.initial_values(watcher, 10**9), 10)
    except kvwatch.WatchStopped:
        return
    raise AssertionError("a stopped watch must raise WatchStopped")
