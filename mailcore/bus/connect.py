"""Connecting to NATS, with every disconnect and reconnect logged and counted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from mailcore import metrics
from mailcore.bus.credentials import NatsAuth
from mailcore.logging import get_logger

log = get_logger("bus")


@dataclass
class Bus:
    """A NATS connection and its JetStream context."""

    nc: NATS
    js: JetStreamContext
    reconnect_listeners: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def on_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` after every reconnection (e.g. to restart a KV watch)."""
        self.reconnect_listeners.append(callback)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def close(self) -> None:
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                await self.nc.close()
        metrics.BUS_CONNECTED.set(0)


async def connect(
    url: str,
    name: str,
    *,
    user: str | None = None,
    password: str | None = None,
    auth: NatsAuth | None = None,
    wait: float = 60.0,
    connect_timeout: float = 2.0,
) -> Bus:
    """Connect, retrying the first connection for up to ``wait`` seconds (the server may be
    starting beside us); afterwards nats-py reconnects forever and we log each event.
    ``auth`` (mailcore.bus.credentials) carries the user, password, inbox prefix and TLS;
    ``user``/``password`` alone are a shorthand for it."""

    async def on_disconnect() -> None:
        metrics.BUS_CONNECTED.set(0)
        if not closing():
            log.warning("nats disconnected", url=url)

    listeners: list[Callable[[], Awaitable[None]]] = []
    client: list[NATS] = []

    def closing() -> bool:
        return bool(client) and (client[0].is_closed or client[0].is_draining)

    async def on_reconnect() -> None:
        metrics.BUS_CONNECTED.set(1)
        metrics.BUS_RECONNECTS.inc()
        log.info("nats reconnected", url=url)
        for callback in list(listeners):
            try:
                await callback()
            except Exception:
                log.exception("reconnect listener failed")

    async def on_error(exc: Exception) -> None:
        metrics.BUS_ERRORS.inc()
        log.warning("nats error", error=f"{type(exc).__name__}: {exc}")

    async def on_closed() -> None:
        metrics.BUS_CONNECTED.set(0)
        log.info("nats connection closed")

    options: dict[str, Any] = {
        "servers": [u.strip() for u in url.split(",")],
        "name": name,
        "connect_timeout": connect_timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
        "closed_cb": on_closed,
    }
    options |= (auth or NatsAuth(user, password)).options()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    attempt = 0
    while True:
        attempt += 1
        try:
            # nats-py keeps retrying a dead server by itself when reconnects are allowed;
            # the deadline bounds the whole wait.
            remaining = max(0.1, deadline - loop.time())
            nc = await asyncio.wait_for(nats.connect(**options), remaining)
            break
        except Exception as exc:
            if loop.time() >= deadline:
                raise ConnectionError(f"no NATS server at {url} after {wait:.0f}s") from exc
            if attempt == 1 or attempt % 10 == 0:
                log.info("waiting for nats", url=url, error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.25)
    client.append(nc)
    metrics.BUS_CONNECTED.set(1)
    log.info("nats connected", url=url)
    return Bus(nc=nc, js=nc.jetstream(), reconnect_listeners=listeners)
