"""The mixed run: load for a while, with a random fault every 10–20 s, then the checker."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable

from reliability.checker import Report
from reliability.scenarios.common import Context, Run, cluster_run, restart


async def _kill_filter(run: Run) -> None:
    await restart(run, "filter")


async def _kill_store(run: Run) -> None:
    await restart(run, "store")


async def _kill_nats(run: Run) -> None:
    run.cluster.kill("nats-n0")
    await asyncio.sleep(2)
    await asyncio.to_thread(run.cluster.start_nats, 0)


async def _freeze(run: Run, name: str) -> None:
    run.cluster.signal(name, signal.SIGSTOP)
    await asyncio.sleep(4)
    run.cluster.signal(name, signal.SIGCONT)


async def _freeze_store(run: Run) -> None:
    await _freeze(run, "store")


async def _freeze_filter(run: Run) -> None:
    await _freeze(run, "filter")


FAULTS: dict[str, Callable[[Run], Awaitable[None]]] = {
    "kill filter": _kill_filter,
    "kill store": _kill_store,
    "kill nats-server": _kill_nats,
    "freeze store 4 s": _freeze_store,
    "freeze filter 4 s": _freeze_filter,
}


async def mixed_run(ctx: Context, seconds: float, seed: int | None = None) -> Report:
    rng = random.Random(seed)
    name = f"mixed-{seconds:.0f}s"
    print(f"-- {name}: load plus a random fault every 10-20 s", flush=True)
    async with cluster_run(ctx, name) as run:
        run.start_load()
        deadline = time.monotonic() + seconds
        done: list[str] = []
        while True:
            pause = rng.uniform(10, 20)
            if time.monotonic() + pause > deadline:
                await run.load_for(max(0.0, deadline - time.monotonic()), snapshot=bool(done))
                break
            # the snapshot after the last fault is read during this pause, under load
            await run.load_for(pause, snapshot=bool(done))
            fault = rng.choice(sorted(FAULTS))
            print(f"   t+{seconds - (deadline - time.monotonic()):.0f}s: {fault}", flush=True)
            await FAULTS[fault](run)
            done.append(fault)
        report = await run.finish()
        report.note(f"faults: {', '.join(done) or 'none'}")
        for svc in ("filter", "store", "nats-n0"):
            if not run.cluster.alive(svc):
                report.fail(f"{svc} not running at the end of the mixed run")
        print(f"   {'ok' if report.ok else 'FAIL'}: acked {report.acked}, lost {report.lost}")
        return report
