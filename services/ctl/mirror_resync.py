"""``mailctl mirror resync | resync-fast | resync-mkdir | resync-config``: make the peer store
equal to this one (mailcore/bus/mirror_resync.py, mailcore/bus/mirror_directory.py).

Each connects to this store's NATS (``--nats``) and to the peer's (``--peer-nats``, else
``POSTERN_PEER_NATS_URL`` with the mirror's credentials and TLS settings) and asks both
stores. Progress goes to stderr (a bar on a terminal, plain lines otherwise) and to the KV
bucket ``MIRROR_STATUS``, where ``mailctl mirror status`` shows it; the summary to stdout.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click
from nats import errors as nats_errors

from mailcore.bus import mirror_directory
from mailcore.bus.mirror_link import PeerUnreachable, connect_peer_once
from mailcore.bus.mirror_resync import Progress, Resync, ResyncError, StoreLink, queues_empty
from mailcore.config import MirrorSettings, load_settings
from services.ctl.nats_cli import CtlError, nats_option, open_bus, run

STALE = 30.0  # seconds without progress after which a running resync is called stopped


def peer_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--peer", default=None, help="peer name (default POSTERN_MIRROR_PEER)")(fn)
    fn = click.option("--node", default=None, help="this store's name (POSTERN_MIRROR_NODE)")(fn)
    fn = click.option(
        "--peer-nats",
        "peer_url",
        default=None,
        help="the peer store's NATS URL (default POSTERN_PEER_NATS_URL)",
    )(fn)
    return nats_option(fn)


async def with_pair(
    nats_url: str,
    peer_url: str | None,
    names: tuple[str | None, str | None],
    work: Callable[[StoreLink, StoreLink, MirrorSettings], Awaitable[Any]],
) -> Any:
    s = load_settings(MirrorSettings)
    url = peer_url or s.peer_nats_url
    if not url:
        raise CtlError("no peer NATS: pass --peer-nats or set POSTERN_PEER_NATS_URL")
    node, peer = names
    s = s.model_copy(
        update={
            "peer_nats_url": url,
            "mirror_node": node or s.mirror_node,
            "mirror_peer": peer or s.mirror_peer,
        }
    )
    bus = await open_bus(nats_url)
    try:
        try:
            peer_nc = await connect_peer_once(s)
        except PeerUnreachable as exc:
            raise CtlError(str(exc)) from None
        try:
            local = StoreLink(bus.nc, bus.js, s.mirror_node, nats_url)
            other = StoreLink(peer_nc, peer_nc.jetstream(), s.mirror_peer, url)
            return await work(local, other, s)
        except ResyncError as exc:
            raise CtlError(str(exc)) from None
        except nats_errors.Error as exc:  # a KV or stream request of the command itself
            raise CtlError(
                lost(exc, (peer_nc, url, "the peer's"), (bus.nc, nats_url, "this store's"))
            ) from None
        finally:
            await peer_nc.close()
    finally:
        await bus.close()


def lost(exc: BaseException, *sides: tuple[Any, str, str]) -> str:
    """One line for a NATS error outside the stores' requests: which NATS went away."""
    for nc, url, whose in sides:
        if not nc.is_connected:
            return f"lost {whose} NATS at {url}"
    return f"NATS request failed: {type(exc).__name__}"


class Meter:
    """The progress on stderr: a bar on a terminal, else a line per account and every
    tenth of the way."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.shown = 0
        self.account: str | None = None
        self.step = 1

    def __call__(self, p: Progress) -> None:
        if self.tty:
            if self.bar is None:
                self.bar = click.progressbar(
                    length=max(1, p.messages_total), label=self.label, file=sys.stderr
                )
                self.bar.__enter__()
            self.bar.update(p.messages_done - self.shown)
            self.shown = p.messages_done
            return
        self.step = max(1, p.messages_total // 10)
        if p.account != self.account or p.messages_done - self.shown >= self.step:
            self.account, self.shown = p.account, p.messages_done
            where = f", account {p.accounts_done + 1}/{p.accounts_total}" if p.account else ""
            click.echo(
                f"{self.label}: {p.messages_done}/{p.messages_total} messages{where}, "
                f"fixed {sum(p.fixes.values())}",
                err=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def summary(p: Progress) -> str:
    fixed = ", ".join(f"{k} {v}" for k, v in sorted(p.fixes.items())) or "nothing to fix"
    resumed = " (resumed)" if p.resumed else ""
    return (
        f"{p.kind} resync to {p.peer} done{resumed}: {p.accounts_total} accounts, "
        f"{p.messages_total} messages compared; {fixed}"
    )


def fixed_messages(p: Progress) -> int:
    return sum(p.fixes.get(k, 0) for k in ("added", "returned", "removed", "flags"))


def start(
    kind: str,
    nats_url: str,
    peer_url: str | None,
    names: tuple[str | None, str | None],
    force: bool,
) -> None:
    label = {"full": "resync", "fast": "resync-fast", "mkdir": "resync-mkdir"}[kind]
    meter = Meter(label)

    async def work(local: StoreLink, other: StoreLink, s: MirrorSettings) -> Progress:
        settled = force or kind != "fast"
        if not settled and not await queues_empty(local.js, other.js, s.mirror_node, s.mirror_peer):
            raise CtlError(
                "records are still queued between the stores: wait until "
                "`mailctl mirror status` shows none (or pass --force)"
            )
        resync = Resync(local, other, s.mirror_node, s.mirror_peer, on_progress=meter)
        return await resync.run(kind)

    try:
        progress: Progress = run(lambda: with_pair(nats_url, peer_url, names, work))
    finally:
        meter.close()
    click.echo(summary(progress))
    if kind != "mkdir":
        click.echo(f"fixed {fixed_messages(progress)} messages")


@click.command("resync")
@peer_options
def resync(nats_url: str, peer_url: str | None, node: str | None, peer: str | None) -> None:
    """Copy every account to a new or wiped peer (mailboxes, messages with their UIDs,
    UIDVALIDITY, modseqs, flags and dates, subscriptions, quota). Resumable: run it again
    after an interruption and it carries on. Does not need the journal's old records."""
    start("full", nats_url, peer_url, (node, peer), force=True)


@click.command("resync-fast")
@peer_options
@click.option("--force", is_flag=True, help="even while records are queued either way")
def resync_fast(
    nats_url: str, peer_url: str | None, node: str | None, peer: str | None, force: bool
) -> None:
    """Compare mailbox digests, bisect by UID range, send only what differs."""
    start("fast", nats_url, peer_url, (node, peer), force)


@click.command("resync-mkdir")
@peer_options
def resync_mkdir(nats_url: str, peer_url: str | None, node: str | None, peer: str | None) -> None:
    """Folders (empty ones too), their UIDVALIDITY and UIDNEXT, and subscriptions."""
    start("mkdir", nats_url, peer_url, (node, peer), force=True)


@click.command("resync-config")
@peer_options
def resync_config(nats_url: str, peer_url: str | None, node: str | None, peer: str | None) -> None:
    """The directory (domains, users, aliases, DKIM keys, quotas) and the password hashes
    to the peer; the mirrors keep them in step from then on."""

    async def work(local: StoreLink, other: StoreLink, s: MirrorSettings) -> tuple[int, int]:
        return await mirror_directory.push_all(local.js, other.js)

    written, deleted = run(lambda: with_pair(nats_url, peer_url, (node, peer), work))
    click.echo(f"directory sent: {written} entries written, {deleted} deleted on the peer")


def _clock(at: float | None) -> str:
    if not at:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_resync(rec: dict[str, Any]) -> list[str]:
    """The resync lines of ``mailctl mirror status``."""
    if not rec:
        return []
    state = rec.get("state", "?")
    if state == "running" and time.time() - float(rec.get("updated_at") or 0) > STALE:
        state = "stopped (run it again to resume)"
    total, done = int(rec.get("messages_total", 0)), int(rec.get("messages_done", 0))
    pct = f" ({100 * done // total}%)" if total else ""
    fixed = ", ".join(f"{k} {v}" for k, v in sorted(rec.get("fixes", {}).items())) or "none"
    return [
        f"  resync ({rec.get('kind')}): {state}; accounts {rec.get('accounts_done', 0)}"
        f"/{rec.get('accounts_total', 0)}, messages {done}/{total}{pct}; fixed: {fixed}",
        f"    started {_clock(rec.get('started_at'))}, "
        f"last progress {_clock(rec.get('updated_at'))}"
        + (f"; error: {rec['error']}" if rec.get("error") else ""),
    ]


def render_repair(rec: dict[str, Any]) -> list[str]:
    """The repair-pass line of ``mailctl mirror status``."""
    if not rec:
        return []
    fixed = ", ".join(f"{k} {v}" for k, v in sorted(rec.get("fixes", {}).items())) or "none"
    last = (
        f"last {_clock(rec['last_run'])}, fixed {rec.get('fixed', 0)} messages ({fixed}); "
        f"{rec.get('fixed_total', 0)} in {rec.get('runs', 0)} runs"
        if rec.get("last_run")
        else "not run yet"
    )
    if rec.get("not_here"):  # the peer runs it (this store is slave)
        return [f"  repair pass: not here ({rec['not_here']}); here: {last}"]
    return [f"  repair pass: {last}; next due {_clock(rec.get('next_due'))}"]


COMMANDS = [resync, resync_fast, resync_mkdir, resync_config]

__all__ = ["COMMANDS", "render_repair", "render_resync"]
