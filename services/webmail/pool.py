"""Per-user IMAP connections, pooled per node with an idle timeout.

A request borrows a logged-in connection for its user and gives it back; connections
idle longer than ``idle_timeout`` are logged out by a reaper. Connections are keyed by
user and a hash of the password, so a changed password never reuses an old login.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator

from services.webmail.imap_gateway import ImapClient, Upstream


class ImapPool:
    def __init__(self, upstream: Upstream, *, idle_timeout: float, max_per_user: int = 4) -> None:
        self.upstream = upstream
        self.idle_timeout = idle_timeout
        self.max_per_user = max_per_user
        self._idle: dict[tuple[str, bytes], list[ImapClient]] = defaultdict(list)
        self._reaper: asyncio.Task[None] | None = None

    @staticmethod
    def _key(user: str, password: str) -> tuple[str, bytes]:
        return user.lower(), hashlib.blake2b(password.encode(), digest_size=16).digest()

    @property
    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    @contextlib.asynccontextmanager
    async def connection(
        self, user: str, password: str, client_ip: str | None
    ) -> AsyncIterator[ImapClient]:
        key = self._key(user, password)
        client: ImapClient | None = None
        while self._idle[key]:
            candidate = self._idle[key].pop()
            if not candidate.broken:
                client = candidate
                break
        if client is None:
            client = await ImapClient.connect(self.upstream, user, password, client_ip=client_ip)
        try:
            yield client
        finally:
            client.last_used = time.monotonic()
            if client.broken or len(self._idle[key]) >= self.max_per_user:
                await client.close()
            else:
                client.stale = True
                self._idle[key].append(client)

    async def drop_user(self, user: str) -> None:
        for key in [k for k in self._idle if k[0] == user.lower()]:
            for c in self._idle.pop(key):
                await c.close()

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())

    async def reap(self) -> None:
        now = time.monotonic()
        for key in list(self._idle):
            keep: list[ImapClient] = []
            for c in self._idle[key]:
                if now - c.last_used > self.idle_timeout or c.broken:
                    await c.close()
                else:
                    keep.append(c)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.idle_timeout / 4))
            await self.reap()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for key in list(self._idle):
            for c in self._idle.pop(key):
                await c.close()
