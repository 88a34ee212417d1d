"""``mailctl mirror status``: the mirror's figures for a peer, read from this store's NATS
(the queue ``MIRROR_TO_<PEER>`` and the counters the mirror process keeps in
``MIRROR_STATUS``)."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import click

from mailcore.bus import mirror as queue
from mailcore.config import MirrorSettings, load_settings
from services.ctl import mirror_resync, mirror_roles
from services.ctl.nats_cli import nats_option, open_bus, run


@click.group()
def mirror() -> None:
    """The live replica of the store (docs/mirror.md)."""


async def collect(nats_url: str, peer: str) -> dict[str, Any]:
    bus = await open_bus(nats_url)
    try:
        counters = await mirror_roles.mirror_status(bus.js, peer)
        peer = counters.get("peer") or peer
        queued, lag = await queue.queue(bus.js, peer)
        resync = await queue.read_status(bus.js, f"resync.{peer}")
        repair = await queue.read_status(bus.js, f"repair.{peer}")
        sync = await queue.read_status(bus.js, f"sync-{peer}")  # the store's, if synchronous
    finally:
        await bus.close()
    return {
        "peer": peer,
        "added": counters.get("added", 0),
        "sent": counters.get("sent", 0),
        "queued": queued,
        "applied": counters.get("applied", 0),
        "conflicts": counters.get("conflicts", 0),
        "resolved": counters.get("resolved", 0),
        "lag_seconds": round(lag, 3),
        "peer_link": counters.get("peer_link", False),
        "peer_down_since": counters.get("peer_down_since"),
        "peer_retries": counters.get("peer_retries", 0),
        "last_error": counters.get("last_error"),
        "resync_accounts": counters.get("resync_accounts", []),
        "reported_at": counters.get("at"),
        "resync": resync,
        "repair": repair,
        "follower": counters.get("follower", False),
        "sync": sync or None,
    }


def render(st: dict[str, Any]) -> list[str]:
    reported = st["reported_at"]
    age = f"{time.time() - reported:.0f}s ago" if reported else "never (mirror not running?)"
    when = (
        datetime.datetime.fromtimestamp(reported, datetime.UTC).strftime("%H:%M:%S")
        if reported
        else "-"
    )
    link = "up" if st["peer_link"] else "DOWN"
    if st.get("peer_down_since"):  # the mirror retries with backoff (peerlink.py)
        down = datetime.datetime.fromtimestamp(st["peer_down_since"], datetime.UTC)
        link += f" (unreachable since {down:%H:%M:%S}, {st['peer_retries']} tries)"
    lines = [
        f"peer {st['peer']}: link {link}, last report {when} ({age})",
        f"  records added {st['added']}  sent {st['sent']}  queued {st['queued']}  "
        f"applied here {st['applied']}  conflicts {st['conflicts']} kept, "
        f"{st['resolved']} resolved",
        f"  lag {st['lag_seconds']:.1f}s (oldest record the peer has not applied)",
        f"  last error: {st['last_error'] or 'none'}",
    ]
    if st["follower"]:
        lines[0] += " (read-only follower)"
    if st["sync"]:
        lines.append("  " + sync_line(st["sync"]))
    if st["resync_accounts"]:
        lines.append(f"  MUST RESYNC: {', '.join(st['resync_accounts'])}")
    lines += mirror_resync.render_resync(st.get("resync") or {})
    lines += mirror_resync.render_repair(st.get("repair") or {})
    return lines


peer_nats_option = click.option(
    "--peer-nats",
    "peer_url",
    default=None,
    help="the peer store's NATS (default POSTERN_PEER_NATS_URL, else the other store of "
    "`mailctl up --mirror`)",
)


def sync_line(sync: dict[str, Any]) -> str:
    since = sync.get("degraded_since")
    if since is None:
        return f"sync: on (writes answered after the peer's commit, timeout {sync['timeout']}s)"
    when = datetime.datetime.fromtimestamp(since, datetime.UTC).strftime("%H:%M:%S")
    return (
        f"sync: DEGRADED, asynchronous since {when} "
        f"({sync.get('timeouts', 0)} writes answered without the peer)"
    )


@mirror.command()
@nats_option
@peer_nats_option
@click.option("--peer", default=None, help="peer name (default POSTERN_MIRROR_PEER)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
def status(nats_url: str, peer_url: str | None, peer: str | None, as_json: bool) -> None:
    """Each side's role; records added, sent, queued and applied; lag; the last error."""
    name = peer or load_settings(MirrorSettings).mirror_peer
    url = peer_url or mirror_roles.default_peer_url(nats_url)

    async def both() -> dict[str, Any]:
        st = await collect(nats_url, name)
        st["roles"] = await mirror_roles.both_sides(nats_url, url, name)
        return st

    st = run(both)
    if as_json:
        click.echo(json.dumps(st))
        return
    click.echo(mirror_roles.render_side("this store", st["roles"]["this"]))
    click.echo(mirror_roles.render_side("peer store", st["roles"]["peer"]))
    for line in render(st):
        click.echo(line)


@mirror.command()
@nats_option
@peer_nats_option
@click.option("--peer", default=None, help="peer name (default POSTERN_MIRROR_PEER)")
@click.option("--force", is_flag=True, help="promote even when the peer's NATS is unreachable")
def promote(nats_url: str, peer_url: str | None, peer: str | None, force: bool) -> None:
    """Make the store on --nats the master (takes inbound mail) and its peer the slave;
    the roles survive restarts. Waits until the old master stopped and shipped all."""
    name = peer or load_settings(MirrorSettings).mirror_peer
    url = peer_url or mirror_roles.default_peer_url(nats_url)
    run(lambda: mirror_roles.promote(nats_url, url, name, force, click.echo))


for _command in mirror_resync.COMMANDS:
    mirror.add_command(_command)
