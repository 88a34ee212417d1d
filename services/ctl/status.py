"""``mailctl status``: the delivery backlog on NATS and, per store, delivered and failed
counts and disk use (read from the store's ``/metrics`` on its ops port)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

import click
from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.config import StoreSettings, load_settings
from services.ctl import pair
from services.ctl.nats_cli import fail, nats_option, open_bus, run


def approx(n: float) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass
class StoreReport:
    url: str
    reachable: bool = False
    deliveries: dict[str, float] = field(default_factory=dict)
    terminated: dict[str, float] = field(default_factory=dict)
    disk_used: float | None = None
    disk_free: float | None = None
    paused: bool = False
    error: str = ""


def read_store(url: str, timeout: float = 3.0) -> StoreReport:
    report = StoreReport(url=url)
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as r:  # noqa: S310
            text = r.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        report.error = str(getattr(exc, "reason", exc))
        return report
    report.reachable = True
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "postern_deliveries_total":
                report.deliveries[sample.labels.get("outcome", "?")] = sample.value
            elif sample.name == "postern_delivery_terminated_total":
                report.terminated[sample.labels.get("reason", "?")] = sample.value
            elif sample.name == "postern_store_disk_used_bytes":
                report.disk_used = sample.value
            elif sample.name == "postern_store_disk_free_bytes":
                report.disk_free = sample.value
            elif sample.name == "postern_delivery_paused":
                report.paused = sample.value > 0
    return report


async def read_backlog(url: str) -> dict[str, int]:
    bus = await open_bus(url)
    try:
        stream = await bus.js.stream_info(names.STREAM_INBOUND)
        consumer = await bus.js.consumer_info(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
        return {
            "messages": int(stream.state.messages),
            "bytes": int(stream.state.bytes),
            "pending": int(consumer.num_pending or 0),
            "in_flight": int(consumer.num_ack_pending or 0),
            "redelivered": int(consumer.num_redelivered or 0),
            "dead": await _dead_count(bus),
        }
    finally:
        await bus.close()


async def _dead_count(bus: Bus) -> int:
    try:
        return int((await bus.js.stream_info(names.STREAM_DEAD)).state.messages)
    except NotFoundError:
        return 0


def _default_stores() -> list[str]:
    """Both stores of ``mailctl up --mirror`` when it runs here, else POSTERN_OPS_PORT's."""
    found = pair.read()
    return [s.ops for s in found] if found else [_default_store()]


def _default_store() -> str:
    s = load_settings(StoreSettings)
    host = "127.0.0.1" if s.ops_host in ("0.0.0.0", "::") else s.ops_host
    return f"http://{host}:{s.ops_port}"


@click.command("status")
@click.option(
    "--store",
    "stores",
    multiple=True,
    help="a store's ops URL (repeatable; default from POSTERN_OPS_HOST/POSTERN_OPS_PORT)",
)
@nats_option
def status(stores: tuple[str, ...], nats_url: str) -> None:
    """Delivery backlog, delivered and failed counts, disk use per store."""
    backlog = run(lambda: read_backlog(nats_url))
    click.echo(
        f"inbound backlog: {backlog['messages']} messages ({approx(backlog['bytes'])}), "
        f"{backlog['in_flight']} being delivered, {backlog['redelivered']} redelivered"
    )
    if backlog["dead"]:
        click.echo(f"dead letters: {backlog['dead']} (mailctl queue dead list)")
    down = 0
    for url in stores or _default_stores():
        r = read_store(url)
        if not r.reachable:
            click.echo(f"store {url}: unreachable ({r.error})")
            down += 1
            continue
        d = r.deliveries
        delivered = int(d.get("delivered", 0) + d.get("junk", 0))
        failed = int(d.get("failed", 0) + sum(r.terminated.values()))
        click.echo(
            f"store {url}: delivered {delivered} (junk {int(d.get('junk', 0))}), "
            f"duplicates {int(d.get('duplicate', 0))}, over quota {int(d.get('quota', 0))}, "
            f"failed {failed} (terminated {int(sum(r.terminated.values()))})"
            + ("  DELIVERY PAUSED: disk full" if r.paused else "")
        )
        if r.disk_used is not None and r.disk_free is not None:
            click.echo(f"store {url}: disk used {approx(r.disk_used)}, free {approx(r.disk_free)}")
    if down:
        fail(f"{down} store(s) unreachable")
