"""nats-server killed and restarted, a three-node cluster losing a node, NATS's disk full,
and a poison message on the bus."""

from __future__ import annotations

import asyncio

from mailcore.bus import names
from mailcore.bus.setup import BusLimits
from reliability.checker import Report
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, cluster_run
from reliability.scenarios.store import fill, tmpfs


@scenario("nats-kill-restart", "bus", "nats-server SIGKILLed under load, restarted 3 s later")
async def nats_kill(ctx: Context) -> Report:
    async with cluster_run(ctx, "nats-kill-restart") as run:
        c = run.cluster
        run.start_load()
        await asyncio.sleep(ctx.duration / 3)
        c.kill("nats-n0")
        await asyncio.sleep(3)
        await asyncio.to_thread(c.start_nats, 0)
        await asyncio.sleep(ctx.duration / 2)
        report = await run.finish()
        for svc in ("filter", "store"):
            if not c.alive(svc):
                report.fail(f"the {svc} died with nats-server")
        return report


@scenario("nats-cluster-lose-node", "bus", "3-node NATS cluster, R3 streams, one node SIGKILLed")
async def nats_cluster(ctx: Context) -> Report:
    async with cluster_run(ctx, "nats-cluster-lose-node", nats_nodes=3) as run:
        c = run.cluster
        run.start_load()
        await run.load_for(ctx.duration / 3, snapshot=True)
        c.kill("nats-n1")  # not restarted: the cluster runs on two of three
        await asyncio.sleep(ctx.duration * 2 / 3)
        report = await run.finish()
        bus = await c.bus()
        try:
            info = await bus.js.stream_info(names.STREAM_INBOUND)
            if (info.config.num_replicas or 1) != 3:
                report.fail(f"inbound stream has {info.config.num_replicas} replicas, not 3")
        finally:
            await bus.close()
        return report


@scenario("nats-disk-full", "bus", "NATS's disk fills up under load, then space returns")
async def nats_disk_full(ctx: Context) -> Report:
    base = ctx.workdir / "nats-disk-full-fs"
    small = BusLimits(
        inbound_max_bytes=48 * 1024**2,
        outbound_max_bytes=8 * 1024**2,
        bodies_max_bytes=48 * 1024**2,
        mirror_max_bytes=8 * 1024**2,
        dead_max_bytes=8 * 1024**2,
    )
    with tmpfs(base, "160m") as fs:
        async with cluster_run(
            ctx,
            "nats-disk-full",
            nats_store_dir=fs / "js",
            limits=small,
            nats_max_file_store="150MB",
        ) as run:
            run.start_load()
            await asyncio.sleep(ctx.duration / 4)
            filler = await asyncio.to_thread(fill, fs, 128 * 1024)
            await asyncio.sleep(ctx.duration / 2)
            filler.unlink()
            await asyncio.sleep(ctx.duration / 4)
            report = await run.finish()
            if not any(code.startswith("4") for code in report.answers):
                report.fail("no 4xx while NATS's disk was full: the fault did not bite")
            return report


@scenario("poison-message", "bus", "undecodable and unknown-recipient frames on the inbound stream")
async def poison(ctx: Context) -> Report:
    async with cluster_run(ctx, "poison-message") as run:
        c = run.cluster
        run.start_load()
        await asyncio.sleep(ctx.duration / 3)
        bus = await c.bus()
        try:
            dead_before = (await bus.js.stream_info(names.STREAM_DEAD)).state.messages
            await bus.js.publish(names.SUBJECT_INBOUND, b"\xff\x00 not a mail frame {")
            await bus.js.publish(
                names.SUBJECT_INBOUND,
                b'{"v": 99, "id": "x"}',
                headers={names.HDR_SCHEMA: "99"},
            )
        finally:
            await bus.close()
        await asyncio.sleep(ctx.duration * 2 / 3)
        report = await run.finish()
        bus = await c.bus()
        try:
            dead_after = (await bus.js.stream_info(names.STREAM_DEAD)).state.messages
        finally:
            await bus.close()
        if dead_after - dead_before < 2:
            report.fail(f"poison frames not dead-lettered ({dead_after - dead_before} of 2)")
        if not c.alive("store"):
            report.fail("the store died on a poison message")
        return report
