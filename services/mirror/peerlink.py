"""The mirror's link to the peer's NATS, kept up with backoff and reported once per outage.

:meth:`PeerLink.connect` returns once the peer's NATS took the connection. While the
peer is unreachable it tries again with backoff (outage.py: 0.5 s doubled up to 5 s),
each try first a plain TCP connect to the peer's address, so nats-py's own retry loop
(a fixed second apart) only runs once the peer answers. Once connected, nats-py
reconnects by itself after a loss; its hooks are this module's: every failed try is
noted instead of logged with a traceback (nats-py's default), the pause before the next
try grows the same way (``reconnect_to_server_handler``), and the outage is reported as
one warning line (``peer store-b unreachable, retrying in 0.5s``) and one line when the
peer is back (``peer store-b reachable again``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

from nats import errors as nats_errors

from mailcore.bus.mirror_link import connect_peer
from mailcore.config import MirrorSettings
from mailcore.logging import get_logger
from services.mirror.outage import Outage, describe

log = get_logger("mirror")

NATS_PORT = 4222
CAP = 5.0  # the longest pause between two tries to reach the peer
# what nats-py reports as a lost or refused connection (the outage's, not logged apart)
LINK_LOST = (
    OSError,
    TimeoutError,
    nats_errors.UnexpectedEOF,
    nats_errors.StaleConnectionError,
    nats_errors.ConnectionClosedError,
    nats_errors.NoServersError,
    nats_errors.ConnectionReconnectingError,
)


def address(url: str) -> tuple[str, int]:
    """Host and port of a NATS URL (``nats://``, ``tls://``, credentials or not)."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    return parts.hostname or "127.0.0.1", parts.port or NATS_PORT


class PeerLink:
    def __init__(self, s: MirrorSettings) -> None:
        self.s = s
        self.nc: Any = None
        self.outage = Outage(
            f"peer {s.mirror_peer} unreachable",
            f"peer {s.mirror_peer} reachable again",
            cap=CAP,
            peer=s.mirror_peer,
            url=s.peer_nats_url or "",
        )
        self._error: BaseException | None = None
        self._reported: set[str] = set()  # errors other than a lost link, logged once

    @property
    def up(self) -> bool:
        return self.nc is not None and bool(self.nc.is_connected)

    async def connect(self, stopping: asyncio.Event) -> Any:
        """The connection to the peer's NATS, once it is made; None if ``stopping``."""
        while not stopping.is_set():
            try:
                await self._reachable()
                self.nc = await connect_peer(
                    self.s,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    reconnect_to_server_handler=self._next_try,
                )
            except Exception as exc:
                delay = self.outage.failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                continue
            self.outage.ok()
            return self.nc
        return None

    async def _reachable(self) -> None:
        host, port = address(self.s.peer_nats_url or "")
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    # --- nats-py's hooks ---------------------------------------------------------------
    async def _on_error(self, exc: Exception) -> None:
        """Every failed (re)connect try and asynchronous error: noted, not logged with a
        traceback. A lost connection is the outage's (one line, from the next try); any
        other error (a permission refused, a slow consumer) is logged once per kind."""
        self._error = exc
        self.outage.last_error = describe(exc)
        if isinstance(exc, LINK_LOST):
            return
        kind = describe(exc)
        if kind not in self._reported:
            self._reported.add(kind)
            log.warning("peer link error", peer=self.s.mirror_peer, error=kind)

    async def _on_disconnected(self) -> None:
        log.debug("peer link lost, reconnecting", peer=self.s.mirror_peer)

    async def _on_reconnected(self) -> None:
        self.outage.ok()

    def _next_try(self, servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
        """Before each reconnect try: the first one at once, then with backoff."""
        failed = max((int(s.reconnects) for s in servers), default=0)
        if failed == 0:
            return None, 0.0
        return None, self.outage.failed(self._error or "connection lost")

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()


__all__ = ["PeerLink", "address"]
