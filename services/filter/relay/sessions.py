"""Idle SMTP sessions kept per destination for the next transaction: after a transaction
ends the client may start the next one with MAIL on the same session (RFC 5321 §4.1.4),
which saves the connection, EHLO, STARTTLS and AUTH. A session is kept for ``idle``
seconds at most (Postfix's ``smtp_connection_cache_time_limit`` is 2 s), at most
``per_destination`` of them, and never across a failure.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

from services.filter.relay.smtp_client import SmtpClient

Key = tuple[str, int, str, str]  # host, port, TLS mode, login


class SessionPool:
    def __init__(self, *, idle: float = 2.0, per_destination: int = 8) -> None:
        self.idle = idle
        self.per_destination = per_destination
        self._idle: dict[Key, list[tuple[float, SmtpClient]]] = defaultdict(list)

    def take(self, key: Key) -> SmtpClient | None:
        """The most recently used live session for ``key``; expired ones are closed."""
        self.prune()
        stack = self._idle.get(key)
        while stack:
            _, client = stack.pop()
            if client.is_connected:
                return client
        return None

    def give(self, key: Key, client: SmtpClient) -> None:
        stack = self._idle[key]
        if client.is_connected and len(stack) < self.per_destination:
            stack.append((time.monotonic(), client))
        else:
            client.close()

    def prune(self) -> None:
        now = time.monotonic()
        for key in list(self._idle):
            keep = []
            for at, client in self._idle[key]:
                if now - at < self.idle and client.is_connected:
                    keep.append((at, client))
                else:
                    client.close()  # the peer times idle sessions out anyway
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def close_all(self) -> None:
        for stack in self._idle.values():
            for _, client in stack:
                with contextlib.suppress(Exception):
                    await client.quit()
                client.close()
        self._idle.clear()
