"""The store service: wires the engine, delivery, IMAP and POP3 together."""

from __future__ import annotations

from mailcore.config import StoreSettings
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.service import ServiceContext

log = get_logger("store")


async def serve(ctx: ServiceContext[StoreSettings]) -> None:
    s = ctx.settings
    bus = await ctx.connect_bus(max_deliver=s.delivery_max_deliver)
    directory = await Directory.open(bus.js)
    bus.on_reconnect(directory.restart_watch)
    ctx.on_cleanup(directory.close)
    ctx.ops.add_check("directory", lambda: directory.synced)
    log.info("store ready")
    await ctx.stopping.wait()
