"""``mailctl mirror promote`` and the roles part of ``mailctl mirror status``
(mailcore.bus.roles; docs/mirror.md "Roles and failover").

A promote makes the store on ``--nats`` the master:

1. the peer's role record becomes ``slave`` at the next epoch, and the command waits
   until the peer's store stopped taking inbound mail (its batch in flight committed and
   acked) — or finds its heartbeat stale: the old master is down;
2. it waits until everything the old master committed is in this store: its mirror
   passed over its journal after the demotion and its queue to this store is empty;
3. this store's record becomes ``master`` at that epoch; its store starts taking inbound
   mail and its mirror starts moving the peer's filters' mail here.

So no message is delivered twice or lost across a promote: at no moment do two stores
take inbound mail, and the new master has every delivery record (delivery key) of the
old one before it takes its first message. With the old master's NATS unreachable,
``--force`` skips 1 and 2; the old master takes the slave role as soon as its mirror
sees the newer epoch (records it had not shipped then come as conflicts, issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from mailcore.bus import mirror as queue
from mailcore.bus import roles
from mailcore.bus.connect import Bus
from mailcore.config import MirrorSettings, load_settings
from services.ctl import pair
from services.ctl.nats_cli import CtlError, open_bus

WAIT = 120.0  # seconds a promote waits for each step before giving up


def default_peer_url(nats_url: str) -> str | None:
    """POSTERN_PEER_NATS_URL, else the other store of ``mailctl up --mirror``'s pair."""
    url = load_settings(MirrorSettings).peer_nats_url
    if url:
        return url
    other = pair.peer_of(nats_url)
    return other.nats if other else None


async def mirror_status(js: Any, peer_key: str) -> dict[str, Any]:
    """The counters of the mirror beside this store: under ``peer_key``, else the only
    peer it reports on (one store, one peer: the name needs no setting)."""
    st = await queue.read_status(js, peer_key)
    if st:
        return st
    with contextlib.suppress(Exception):
        keys = await (await js.key_value(queue.KV_STATUS)).keys()
        if len(keys) == 1:
            return await queue.read_status(js, keys[0])
    return {}


async def side(js: Any, peer_key: str) -> dict[str, Any]:
    """One store's role, heartbeat and mirror counters, read from its NATS."""
    rec = await roles.read(js)
    beat = await roles.read_beat(js)
    mirror = await mirror_status(js, peer_key)
    return {
        "node": mirror.get("node") or (rec.node if rec else None),
        "role": rec.role if rec else None,
        "epoch": rec.epoch if rec else None,
        "store_running": bool(beat and beat.alive),
        "taking_inbound": bool(beat and beat.alive and beat.consuming),
    }


def render_side(label: str, st: dict[str, Any]) -> str:
    if st.get("unreachable"):
        return f"{label}: NATS unreachable ({st['unreachable']})"
    if st["role"] is None:
        return f"{label}: no mirror role (POSTERN_MIRROR_ROLE unset)"
    running = "store running" if st["store_running"] else "store NOT running"
    inbound = ", taking inbound mail" if st["taking_inbound"] else ""
    return f"{label} {st['node'] or '?'}: {st['role']} (epoch {st['epoch']}), {running}{inbound}"


async def _until(check: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            raise CtlError(f"promote stopped: {what} did not happen within {WAIT:.0f}s")
        await asyncio.sleep(0.2)


async def _demote(
    peer: Bus, node: str, own_node: str, epoch: int, echo: Callable[[str], None]
) -> None:
    """Steps 1 and 2: the old master stops taking mail and ships all it has."""
    demoted_at = time.time()
    await roles.write(peer.js, roles.SLAVE, epoch, node)

    async def stopped() -> bool:
        beat = await roles.read_beat(peer.js)
        return beat is None or not beat.alive or (beat.epoch >= epoch and not beat.consuming)

    await _until(stopped, "the old master stopping delivery")
    beat = await roles.read_beat(peer.js)
    if beat is None or not beat.alive:
        echo("the old master's store is not running: it starts as slave when it is back")
    else:
        echo("the old master stopped taking inbound mail")

    store_up = beat is not None and beat.alive
    beat_at = beat.at if beat is not None and store_up else 0.0

    async def drained() -> bool:
        # with its store down, the old master's mirror cannot read its journal: what it
        # committed and had not shipped comes when the store is back
        st = await queue.read_status(peer.js, own_node)
        live = bool(st) and time.time() - float(st.get("at") or 0) < roles.STALE
        waiting = store_up and live
        shipped = not waiting or float(st.get("idle_since") or 0) > max(demoted_at, beat_at)
        count, _ = await queue.queue(peer.js, own_node)
        return shipped and count == 0

    await _until(drained, "the old master's records reaching this store")
    echo("every record of the old master is in this store")


async def promote(
    nats_url: str, peer_url: str | None, peer_key: str, force: bool, echo: Callable[[str], None]
) -> int:
    """Make the store on ``nats_url`` master; the new epoch."""
    bus = await open_bus(nats_url)
    try:
        own = await roles.read(bus.js)
        if own is None:
            raise CtlError("this store has no mirror role: set POSTERN_MIRROR_ROLE")
        mine = await mirror_status(bus.js, peer_key)
        own_node, peer_key = mine.get("node") or "", mine.get("peer") or peer_key
        if not own_node:
            raise CtlError("this store's mirror never reported: is it running?")
        peer: Bus | None = None
        if peer_url:
            try:
                peer = await open_bus(peer_url)
            except CtlError as exc:
                if not force:
                    raise CtlError(f"{exc}; promote anyway with --force") from None
                echo(f"!! {exc}: promoting without demoting the old master (--force)")
        elif not force:
            raise CtlError("no peer NATS URL (--peer-nats or POSTERN_PEER_NATS_URL)")
        try:
            peer_rec = await roles.read(peer.js) if peer else None
            if own.role == roles.MASTER and (peer_rec is None or peer_rec.role == roles.SLAVE):
                echo(f"already master (epoch {own.epoch})")
                return own.epoch
            epoch = max(own.epoch, peer_rec.epoch if peer_rec else 0) + 1
            if peer is not None:
                await _demote(peer, peer_rec.node if peer_rec else peer_key, own_node, epoch, echo)
        finally:
            if peer is not None:
                await peer.close()
        await roles.write(bus.js, roles.MASTER, epoch, own.node)

        async def taking() -> bool:
            beat = await roles.read_beat(bus.js)
            return beat is None or not beat.alive or (beat.epoch >= epoch and beat.consuming)

        await _until(taking, "this store taking inbound mail")
        echo(f"{own_node} is master (epoch {epoch})")
        return epoch
    finally:
        await bus.close()


async def both_sides(nats_url: str, peer_url: str | None, peer_key: str) -> dict[str, Any]:
    bus = await open_bus(nats_url)
    try:
        here = await side(bus.js, peer_key)
    finally:
        await bus.close()
    there: dict[str, Any] = {"unreachable": "no peer NATS URL"}
    if peer_url:
        try:
            peer = await open_bus(peer_url)
        except CtlError as exc:
            there = {"unreachable": str(exc)}
        else:
            try:
                there = await side(peer.js, here["node"] or "")
            finally:
                await peer.close()
    return {"this": here, "peer": there}


__all__ = ["both_sides", "default_peer_url", "promote", "render_side", "side"]
