"""What every scenario does: start a cluster, put load on it, hurt it, wait for the store
to drain, read every mailbox over IMAP and check the ledger against it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.checker import MailboxView, Report, check
from reliability.cluster import HOST, Cluster
from reliability.ledger import Ledger
from reliability.load import Load
from reliability.reader import snapshot


@dataclass
class Context:
    workdir: Path
    duration: float = 15.0  # seconds of load per scenario
    senders: int = 4
    log: Callable[[str], None] = print


@dataclass
class Run:
    """One scenario's cluster, load, ledger and snapshots."""

    ctx: Context
    name: str
    cluster: Cluster
    ledger: Ledger = field(default_factory=Ledger)
    snapshots: list[list[MailboxView]] = field(default_factory=list)
    load: Load | None = None
    # the stores read over IMAP, (name, port); empty: the cluster's one store ("store")
    stores: list[tuple[str, int]] = field(default_factory=list)
    # awaited after the drain, before the final snapshot (a mirror converging); False if not
    settle: Callable[[], Awaitable[bool]] | None = None
    settle_what: str = "the stores did not settle"
    read: Callable[[str, str, int, list[tuple[str, str]]], list[MailboxView]] = snapshot

    def accounts(self) -> list[tuple[str, str]]:
        return list(self.cluster.users.items())

    def endpoints(self) -> list[tuple[str, int]]:
        return self.stores or [("store", self.cluster.imap_port)]

    async def _read(self, store: str, port: int) -> list[MailboxView]:
        """Every account of one store, read at once (one IMAP connection each): each
        account's view is consistent on its own, so reading them in turn bought nothing
        but time."""
        parts = await asyncio.gather(
            *(asyncio.to_thread(self.read, store, HOST, port, [a]) for a in self.accounts())
        )
        return [view for part in parts for view in part]

    async def take_snapshot(self, only: Sequence[str] | None = None) -> bool:
        """A mid-run snapshot for the UID checks (of the stores named in ``only``, default
        all); False when a store did not answer (what the others showed is kept)."""
        views: list[MailboxView] = []
        answered = True
        for store, port in self.endpoints():
            if only is not None and store not in only:
                continue
            try:
                views += await self._read(store, port)
            except Exception:
                answered = False
        if views:
            self.snapshots.append(views)
        return answered

    async def load_for(self, seconds: float, *, snapshot: bool = False) -> None:
        """Let the load run ``seconds``; with ``snapshot``, take a mid-run snapshot in that
        time (under the same load) instead of after it, so reading does not add to it."""
        if snapshot:
            await asyncio.gather(self.take_snapshot(), asyncio.sleep(seconds))
        else:
            await asyncio.sleep(seconds)

    def start_load(self, **kwargs: Any) -> Load:
        self.load = Load(
            HOST,
            self.cluster.smtp_port,
            self.ledger,
            list(self.cluster.users),
            senders=self.ctx.senders,
            **kwargs,
        )
        self.load.start()
        return self.load

    async def stop_load(self) -> None:
        if self.load is not None:
            await self.load.stop()

    async def finish(self) -> Report:
        """Drain, settle, take the final snapshot (every store in one), check."""
        await self.stop_load()
        drained = await self.cluster.drained(timeout=120)
        settled = await self.settle() if self.settle is not None else True
        final = False
        for _ in range(30):
            if await self._final_snapshot():
                final = True
                break
            await asyncio.sleep(1)
        stores = [name for name, _ in self.endpoints()] if self.stores else None
        report = check(self.name, self.ledger, self.snapshots, stores)
        if not drained:
            report.fail("the store did not drain the inbound stream within 120 s")
        if not settled:
            report.fail(self.settle_what)
        if not final:
            report.fail("a store did not answer IMAP for the final snapshot")
        return report

    async def _final_snapshot(self) -> bool:
        """Every store, or none: the final snapshot is what loss and divergence count on."""
        views: list[MailboxView] = []
        for store, port in self.endpoints():
            try:
                views += await self._read(store, port)
            except Exception:
                return False
        self.snapshots.append(views)
        return True


@contextlib.asynccontextmanager
async def cluster_run(ctx: Context, name: str, **cluster_args: Any) -> AsyncIterator[Run]:
    root = ctx.workdir / name
    cluster = Cluster(root, **cluster_args)
    run = Run(ctx, name, cluster)
    try:
        await cluster.start()
        yield run
    finally:
        await run.stop_load()
        await asyncio.to_thread(cluster.stop)


async def restart_when_dead(run: Run, name: str, timeout: float, *, after: float = 0.5) -> bool:
    """Wait for ``name`` to die (its fault point fired); restart it clean. False if it
    never died within ``timeout``."""
    c = run.cluster
    deadline = time.monotonic() + timeout
    while c.alive(name):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    c.procs.pop(name, None)
    await asyncio.sleep(after)
    await asyncio.to_thread(c.start_service, name)
    if name == "store":
        await c.shorten_ack_wait()
    return True


async def restart(run: Run, name: str, *, down: float = 0.5) -> None:
    c = run.cluster
    c.kill(name)
    await asyncio.sleep(down)
    await asyncio.to_thread(c.start_service, name)
    if name == "store":
        await c.shorten_ack_wait()
