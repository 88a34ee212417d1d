"""A real nats-server with Postern's per-service users (and TLS when asked), the way
``mailctl up`` and compose run it (services.ctl.natsauth), for the security tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats

from mailcore.bus.connect import Bus, connect
from mailcore.bus.credentials import NatsAuth, client_tls
from mailcore.bus.permissions import MIRROR_NODES
from services.ctl import daemons, natsauth
from tests.support.daemons import NatsServer


class SecureNats(NatsServer):
    """nats-server with one user per role; ``tls=True`` makes it refuse plain clients."""

    def __init__(
        self, workdir: Path, *, tls: bool = False, mirror_nodes: tuple[str, ...] = MIRROR_NODES
    ) -> None:
        super().__init__(workdir)
        self.passwords = natsauth.ensure_passwords(workdir / "users")
        self.tls = natsauth.ensure_server_tls(workdir / "tls", ["localhost"]) if tls else None
        self.config = daemons.write_nats_config(
            workdir / "nats.conf",
            host=self.host,
            port=self.port,
            store_dir=workdir / "js",
            extra=natsauth.server_config(self.passwords, self.tls, mirror_nodes),
        )

    def auth(self, user: str | None, password: str | None = None) -> NatsAuth:
        ctx = client_tls(self.tls.ca, None, None) if self.tls else None
        if user is None:
            return NatsAuth(None, None, ctx)
        return NatsAuth(user, password or self.passwords[user], ctx)

    async def bus(self, user: str) -> Bus:
        return await connect(self.url, f"test-{user}", auth=self.auth(user), wait=10)


class Violations:
    """A raw nats-py client of one user that records the server's permission errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.seen = asyncio.Event()
        self.nc: Any = None

    async def connect(self, server: SecureNats, user: str) -> Violations:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())
            self.seen.set()

        self.nc = await nats.connect(
            server.url, error_cb=on_error, allow_reconnect=False, **server.auth(user).options()
        )
        return self

    async def next_violation(self) -> str:
        """The next permissions error the server sends (it sends one per refused act)."""
        await asyncio.wait_for(self.seen.wait(), 10)
        self.seen.clear()
        return self.errors[-1]

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


def plain_session(
    host: str, port: int, user: str = "", password: str = ""
) -> tuple[dict[str, Any], bytes]:
    """A client that never starts TLS: the server's INFO, then everything it answers to a
    plaintext CONNECT and PING until it closes (nats-py would upgrade by itself)."""
    import json
    import socket

    with socket.create_connection((host, port), timeout=10) as sock:
        reader = sock.makefile("rb")
        info_line = reader.readline()
        info = json.loads(info_line.split(b" ", 1)[1])
        connect = {"verbose": False, "pedantic": False, "user": user, "pass": password}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return info, answer
