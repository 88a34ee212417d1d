"""The filter service: SMTP listeners, screening, hand-off to JetStream."""

from __future__ import annotations

from mailcore.config import FilterSettings
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.service import ServiceContext

log = get_logger("filter")


async def serve(ctx: ServiceContext[FilterSettings]) -> None:
    bus = await ctx.connect_bus()
    directory = await Directory.open(bus.js)
    bus.on_reconnect(directory.restart_watch)
    ctx.on_cleanup(directory.close)
    ctx.ops.add_check("directory", lambda: directory.synced)
    log.info("filter ready")
    await ctx.stopping.wait()
