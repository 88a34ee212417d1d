"""What every scenario does: start a cluster, put load on it, hurt it, wait for the store
to drain, read every mailbox over IMAP and check the ledger against it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
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

    def accounts(self) -> list[tuple[str, str]]:
        return list(self.cluster.users.items())

    async def take_snapshot(self) -> bool:
        """A mid-run snapshot for the UID checks; False when the store did not answer."""
        try:
            snap = await asyncio.to_thread(
                snapshot, "store", HOST, self.cluster.imap_port, self.accounts()
            )
        except Exception:
            return False
        self.snapshots.append(snap)
        return True

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
        """Drain, take the final snapshot, check."""
        await self.stop_load()
        drained = await self.cluster.drained(timeout=120)
        final = False
        for _ in range(30):
            if await self.take_snapshot():
                final = True
                break
            await asyncio.sleep(1)
        report = check(self.name, self.ledger, self.snapshots)
        if not drained:
            report.fail("the store did not drain the inbound stream within 120 s")
        if not final:
            report.fail("the store did not answer IMAP for the final snapshot")
        return report


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
