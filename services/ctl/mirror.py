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
from mailcore.bus import names
from mailcore.config import MirrorSettings, load_settings
from services.ctl.nats_cli import CtlError, nats_option, open_bus, run


@click.group()
def mirror() -> None:
    """The live replica of the store (docs/mirror.md)."""


async def collect(nats_url: str, peer: str) -> dict[str, Any]:
    bus = await open_bus(nats_url)
    try:
        queued, lag = await queue.queue(bus.js, peer)
        counters = await queue.read_status(bus.js, peer)
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
        "last_error": counters.get("last_error"),
        "resync_accounts": counters.get("resync_accounts", []),
        "reported_at": counters.get("at"),
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
    lines = [
        f"peer {st['peer']}: link {'up' if st['peer_link'] else 'DOWN'}, "
        f"last report {when} ({age})",
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
    return lines


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
@click.option("--peer", default=None, help="peer name (default POSTERN_MIRROR_PEER)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
def status(nats_url: str, peer: str | None, as_json: bool) -> None:
    """Records added, sent, queued and applied; lag; the last error."""
    name = peer or load_settings(MirrorSettings).mirror_peer
    st = run(lambda: collect(nats_url, name))
    if as_json:
        click.echo(json.dumps(st))
        return
    for line in render(st):
        click.echo(line)


async def _ask(bus: Any, op: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        reply = await bus.nc.request(names.SUBJECT_REPLICA + op, json.dumps(body).encode(), 60)
    except Exception as exc:
        raise CtlError(f"the store did not answer ({type(exc).__name__}): is it running?") from exc
    value: dict[str, Any] = json.loads(reply.data)
    if "error" in value:
        raise CtlError(value["error"])
    return value


async def restart_readers(nats_url: str, peer: str, echo: Any) -> int:
    """Every account's reader ``mirror:<peer>`` back to 0; the accounts that could not."""
    bus = await open_bus(nats_url)
    failed = 0
    try:
        accounts = (await _ask(bus, "accounts", {}))["accounts"]
        for i, account in enumerate(accounts, 1):
            reply = await _ask(bus, "reset", {"account": account, "reader": f"mirror:{peer}"})
            if "pruned" in reply:
                failed += 1
                echo(f"!! {account}: journal pruned before record {reply['pruned']}: not resent")
            else:
                echo(f"[{i}/{len(accounts)}] {account}: {reply['head']} records to resend")
    finally:
        await bus.close()
    return failed


@mirror.command()
@nats_option
@click.option("--peer", default=None, help="peer name (default POSTERN_MIRROR_PEER)")
def resync(nats_url: str, peer: str | None) -> None:
    """Send every account to a new or wiped peer again (its mirror applies what it lacks;
    resumable: the reader's position moves as records reach the queue)."""
    name = peer or load_settings(MirrorSettings).mirror_peer

    def echo(line: str) -> None:
        click.echo(line, err=line.startswith("!!"))

    failed = run(lambda: restart_readers(nats_url, name, echo))
    if failed:
        raise SystemExit(1)
    click.echo("resync started: follow it with `mailctl mirror status` (queued, lag)")
