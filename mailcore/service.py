"""What every service does around its own work: settings, logging, the event loop,
the ops endpoint, the bus connection, and a clean stop on SIGINT/SIGTERM.

A service's ``__main__`` is one line::

    run_service(StoreSettings, serve)

where ``serve(ctx)`` starts its listeners, then awaits ``ctx.stopping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic

from mailcore.bus import credentials
from mailcore.bus.connect import Bus, connect
from mailcore.bus.permissions import ADMIN
from mailcore.bus.setup import BusLimits, SetupError, await_declared, declare_all
from mailcore.config import SettingsT, hostname_warning, load_settings
from mailcore.logging import get_logger, setup_logging
from mailcore.metrics import OpsServer

log = get_logger("service")


@dataclass
class ServiceContext(Generic[SettingsT]):
    settings: SettingsT
    ops: OpsServer
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    bus: Bus | None = None
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def connect_bus(self, *, max_deliver: int = 20) -> Bus:
        """Connect to NATS, declare streams and buckets, register the health check."""
        s = self.settings
        self.bus = await connect(
            s.nats_url,
            f"postern-{s.service_name}",
            auth=credentials.from_settings(s),
        )
        limits = BusLimits.from_settings(s, max_deliver)
        if s.nats_user and s.nats_user != ADMIN:
            # a service user may not declare streams (mailcore.bus.permissions): the
            # administrator did (mailctl up, compose's nats container); wait for them
            await await_declared(self.bus.js, self.stopping)
        else:
            await declare_all(self.bus.js, limits)
        bus = self.bus
        self.ops.add_check("nats", lambda: bus.connected)
        self.cleanups.append(bus.close)
        return bus

    def on_cleanup(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` at stop, in reverse order of registration."""
        self.cleanups.append(callback)


Serve = Callable[[ServiceContext[SettingsT]], Awaitable[None]]


async def _main(settings: SettingsT, serve: Serve[SettingsT]) -> int:
    ops = OpsServer(settings.ops_host, settings.ops_port)
    ctx: ServiceContext[SettingsT] = ServiceContext(settings=settings, ops=ops)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, ctx.stopping.set)
    await ops.start()
    log.info("ops endpoint", url=f"http://{settings.ops_host}:{ops.port}/healthz")
    status = 0
    try:
        await serve(ctx)
    except (SetupError, credentials.CredentialsError) as exc:
        # a start-up refusal says what to change in one line; no traceback
        log.error(f"cannot start: {exc}")
        status = 2
    except Exception:
        log.exception("service failed")
        status = 1
    finally:
        for cleanup in reversed(ctx.cleanups):
            try:
                await asyncio.wait_for(cleanup(), 15)
            except Exception:
                log.exception("cleanup failed")
        await ops.stop()
    log.info("stopped", status=status)
    return status


def run_service(settings_cls: type[SettingsT], serve: Serve[SettingsT]) -> None:
    """Entry point of ``python -m services.<name>``."""
    settings = load_settings(settings_cls)
    setup_logging(settings.service_name, settings.log_level, settings.log_format)
    warning = hostname_warning(settings.hostname)
    if warning:
        log.warning(warning)
    runner: Callable[..., int] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    sys.exit(runner(_main(settings, serve)))
