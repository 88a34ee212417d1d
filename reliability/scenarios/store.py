"""The store killed (SIGKILL) at each step of delivery, and its disk full, under load."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from reliability.checker import Report
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, cluster_run, restart, restart_when_dead

FIRE_AT = 8  # the 8th delivery batch: mail already in the mailboxes


async def _store_point(ctx: Context, name: str, point: str) -> Report:
    async with cluster_run(ctx, name, fault_points={"store": f"{point}@{FIRE_AT}"}) as run:
        run.start_load()
        died = await restart_when_dead(run, "store", timeout=ctx.duration * 4)
        await run.load_for(ctx.duration / 2, snapshot=True)
        report = await run.finish()
        if not died:
            report.fail(f"the fault point {point} never fired")
        return report


def _register_point(point: str, what: str) -> None:
    name = "store-kill-" + point.split(".", 1)[1].replace("_", "-")

    @scenario(name, "store", what)
    async def run(ctx: Context) -> Report:
        return await _store_point(ctx, name, point)


_register_point("store.before_commit", "store SIGKILLed with a batch fetched, not committed")
_register_point("store.after_commit", "store SIGKILLed after its commit, before the ack")
_register_point("store.after_ack", "store SIGKILLed just after acking a batch")


@scenario("store-kill-random", "store", "store SIGKILLed three times at random moments")
async def random_kills(ctx: Context) -> Report:
    async with cluster_run(ctx, "store-kill-random") as run:
        run.start_load()
        for n in range(3):  # a snapshot after each kill (the last one's by finish)
            await run.load_for(ctx.duration / 4, snapshot=n > 0)
            await restart(run, "store")
        return await run.finish()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (root only): a disk that really fills up."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int) -> Path:
    """Fill the file system of ``path`` up to ``leave`` free bytes with one file."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = path / "filler"
    with filler.open("wb", buffering=0) as fh:
        chunk = b"\0" * (1 << 20)
        todo = max(0, free - leave)
        try:
            while todo > 0:
                todo -= fh.write(chunk[: min(len(chunk), todo)])
        except OSError as exc:  # the services wrote meanwhile: full is what we wanted
            if exc.errno != errno.ENOSPC:
                raise
    return filler


@scenario("store-disk-full", "store", "store's disk fills up under load, then space returns")
async def store_disk_full(ctx: Context) -> Report:
    base = ctx.workdir / "store-disk-full-fs"
    with tmpfs(base, "64m") as fs:
        # the store pauses delivery below delivery_min_free_bytes (256 MiB by default, more
        # than this whole tmpfs): 8 MiB here, so it starts healthy and the filler bites
        env = {"POSTERN_DELIVERY_MIN_FREE_BYTES": str(8 * 1024**2)}
        async with cluster_run(
            ctx, "store-disk-full", store_data=fs / "store", extra_env=env
        ) as run:
            run.start_load()
            await asyncio.sleep(ctx.duration / 4)
            filler = await asyncio.to_thread(fill, fs, 256 * 1024)
            await asyncio.sleep(ctx.duration / 2)
            alive_while_full = run.cluster.alive("store")
            filler.unlink()
            await asyncio.sleep(ctx.duration / 4)
            report = await run.finish()
            if not alive_while_full:
                report.fail("the store died when its disk filled up")
            log = run.cluster.log("store").read_text(errors="replace")
            if "disk full: delivery paused" not in log:
                report.fail("the store never saw its disk full: the fault did not bite")
            elif "delivery resumed" not in log:
                report.fail("the store never resumed delivery after space returned")
            return report


@scenario(
    "store-kill-imap-append",
    "store",
    "IMAP APPEND and SMTP delivery into the same mailboxes; store SIGKILLed twice",
)
async def append_kill(ctx: Context) -> Report:
    """UIDs come from two paths at once (delivery and APPEND) across store crashes: the
    snapshots between crashes catch a UID reused or handed out below an earlier UIDNEXT."""
    from reliability.appender import Appender
    from reliability.cluster import HOST

    async with cluster_run(ctx, "store-kill-imap-append") as run:
        appender = Appender(HOST, run.cluster.imap_port, run.ledger, run.accounts())
        run.start_load()
        appender.start()
        try:
            for _ in range(2):
                await run.load_for(ctx.duration / 3, snapshot=True)
                await restart(run, "store")
            await asyncio.sleep(ctx.duration / 3)
        finally:
            await asyncio.to_thread(appender.stop)
        report = await run.finish()
        appended = sum(1 for e in run.ledger if e.step == "APPEND" and e.outcome.value == "acked")
        report.note(f"{appended} messages appended over IMAP")
        if appended == 0:
            report.fail("no IMAP APPEND succeeded")
        return report
