"""The mirror service: keeps a peer store live and identical (not built yet).

Until the mirror capability lands this process only reports that it is not configured,
so that compose's ``mirror`` profile and ``mailctl`` can already refer to it.
"""

from __future__ import annotations

from mailcore.config import MirrorSettings
from mailcore.logging import get_logger
from mailcore.service import ServiceContext

log = get_logger("mirror")


async def serve(ctx: ServiceContext[MirrorSettings]) -> None:
    log.warning("the mirror is not built yet: this process replicates nothing")
    ctx.ops.add_check("mirror_built", lambda: False)
    await ctx.stopping.wait()
