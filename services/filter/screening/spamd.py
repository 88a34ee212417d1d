"""SpamAssassin's spamd through aiospamc: the score and the rules that fired (SYMBOLS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiospamc
from aiospamc.client import Client
from aiospamc.connections import ConnectionManager, TcpConnectionManager, UnixConnectionManager
from aiospamc.requests import Request
from loguru import logger as _loguru

# aiospamc logs every request through loguru, to stderr by default: not ours to print.
_loguru.disable("aiospamc")


class SpamdError(Exception):
    """spamd is unreachable or answered with an error."""


@dataclass(frozen=True, slots=True)
class SpamReport:
    score: float
    rules: tuple[str, ...]


class SpamdClient:
    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 783, socket_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.socket_path = socket_path
        self._clients: dict[float, Client] = {}

    def _client(self, timeout: float) -> Client:
        # aiospamc's convenience functions build a connection manager, and with it a default
        # SSL context (loading every system CA), for every call; build ours once per timeout.
        client = self._clients.get(timeout)
        if client is None:
            limits = aiospamc.Timeout(total=timeout, connection=min(timeout, 5.0))
            manager: ConnectionManager
            if self.socket_path is not None:
                manager = UnixConnectionManager(self.socket_path, limits)
            else:
                manager = TcpConnectionManager(self.host, self.port, None, limits)
            client = self._clients[timeout] = Client(manager)
        return client

    async def check(self, message: bytes, timeout: float) -> SpamReport:
        try:
            # spamd protocol SYMBOLS: score plus the names of the rules that fired.
            response = await self._client(timeout).request(Request("SYMBOLS", body=message))
        except TimeoutError:
            raise
        except Exception as exc:  # aiospamc raises a family of its own; all mean "no verdict"
            raise SpamdError(f"{type(exc).__name__}: {exc}"[:200]) from None
        spam = response.headers.spam
        if spam is None:
            raise SpamdError("spamd answered without a Spam header")
        body = bytes(response.body or b"").decode("ascii", "replace").strip()
        rules = tuple(r for r in body.replace("\n", ",").split(",") if r)
        return SpamReport(score=float(spam.score), rules=rules)
