"""The filter killed (SIGKILL) at each step of a transaction, under load."""

from __future__ import annotations

import asyncio

from reliability.checker import Report
from reliability.cluster import HOST
from reliability.ledger import Entry, Outcome
from reliability.load import SmtpBroke, SmtpClient, make_message, new_rid
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, cluster_run, restart, restart_when_dead

FIRE_AT = 25  # the fault point fires on the 25th message: load is well under way


@scenario("baseline", "intake", "load with no fault")
async def baseline(ctx: Context) -> Report:
    async with cluster_run(ctx, "baseline") as run:
        run.start_load()
        await asyncio.sleep(ctx.duration / 2)
        await run.load_for(ctx.duration / 2, snapshot=True)
        return await run.finish()


async def _filter_point(ctx: Context, name: str, point: str) -> Report:
    async with cluster_run(ctx, name, fault_points={"filter": f"{point}@{FIRE_AT}"}) as run:
        run.start_load()
        died = await restart_when_dead(run, "filter", timeout=ctx.duration * 4)
        await run.load_for(ctx.duration / 2, snapshot=True)
        report = await run.finish()
        if not died:
            report.fail(f"the fault point {point} never fired")
        return report


def _register_point(point: str, what: str) -> None:
    name = "filter-kill-" + point.split(".", 1)[1].replace("_", "-")

    @scenario(name, "intake", what)
    async def run(ctx: Context) -> Report:
        return await _filter_point(ctx, name, point)


_register_point("filter.after_scan", "filter SIGKILLed after the scan, before the publish")
_register_point("filter.during_publish", "filter SIGKILLed with a publish on its way")
_register_point("filter.after_puback", "filter SIGKILLed after the PubAck, before the 250")
_register_point("filter.after_250", "filter SIGKILLed just after answering 250")


@scenario("filter-kill-mid-data", "intake", "filter SIGKILLed while a client is mid-DATA")
async def mid_data(ctx: Context) -> Report:
    async with cluster_run(ctx, "filter-kill-mid-data") as run:
        c = run.cluster
        run.start_load()
        await asyncio.sleep(ctx.duration / 3)
        # A client half-way through its message: the kill must leave no trace of it.
        rcpt = next(iter(c.users))
        rid = new_rid("middata")
        half = make_message(rid, "mid@remote.example", [rcpt], size=4000)
        client = await SmtpClient.connect(HOST, c.smtp_port, 10)
        try:
            await client.reply(10)
            for line in ("EHLO mid.example", "MAIL FROM:<mid@remote.example>", f"RCPT TO:<{rcpt}>"):
                await client.command(line, 10)
            code, _ = await client.command("DATA", 10)
            assert code == 354, code
            await client.send(half[: len(half) // 2])
            await restart(run, "filter")
            try:
                step_code: int | None = (await client.reply(5))[0]
            except SmtpBroke:
                step_code = None
        finally:
            client.close()
        run.ledger.record(Entry(rid, (rcpt,), Outcome.REFUSED, step_code, "DATA", "killed"))
        await asyncio.sleep(ctx.duration / 2)
        return await run.finish()
