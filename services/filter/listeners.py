"""The filter's listening sockets: MX, submission (STARTTLS), submissions (implicit TLS),
and the PROXY-protocol-only twins of each for use behind HAProxy (0 = off).

Every socket accepts in plaintext, implicit TLS included: behind HAProxy the PROXY header
comes in the clear before the TLS handshake (``send-proxy-v2``), so the session reads it
and then starts TLS itself (see ``Session.start_implicit_tls``). The direct submissions
port takes the same path, so a failed handshake is handled in one place.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from mailcore.config import FilterSettings
from mailcore.logging import get_logger

log = get_logger("filter.listeners")


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str  # metrics label and ClientInfo.listener, e.g. "smtp", "proxy-submission"
    port: int
    submission: bool  # AUTH offered and required before MAIL
    implicit_tls: bool  # TLS from the first byte (RFC 8314 §3.3)
    proxied: bool  # a PROXY protocol header comes first


def listener_specs(s: FilterSettings) -> list[ListenerSpec]:
    candidates = [
        ListenerSpec("smtp", s.smtp_port, False, False, False),
        ListenerSpec("submission", s.submission_port, True, False, False),
        ListenerSpec("submissions", s.submissions_port, True, True, False),
        ListenerSpec("proxy-smtp", s.proxy_smtp_port, False, False, True),
        ListenerSpec("proxy-submission", s.proxy_submission_port, True, False, True),
        ListenerSpec("proxy-submissions", s.proxy_submissions_port, True, True, True),
    ]
    return [spec for spec in candidates if spec.port]


class Listeners:
    def __init__(self, host: str, tls: ssl.SSLContext | None, backlog: int = 1024) -> None:
        self.host = host
        self.tls = tls
        self.backlog = backlog
        self.servers: dict[str, asyncio.Server] = {}

    async def start(
        self,
        specs: list[ListenerSpec],
        factory: Callable[[ListenerSpec], asyncio.Protocol],
    ) -> None:
        loop = asyncio.get_running_loop()
        for spec in specs:
            if spec.implicit_tls and self.tls is None:
                raise RuntimeError(f"{spec.name} needs a TLS certificate")
            server = await loop.create_server(
                lambda spec=spec: factory(spec),
                self.host,
                spec.port,
                reuse_address=True,
                backlog=self.backlog,
                family=socket.AF_INET6 if ":" in self.host else socket.AF_UNSPEC,
            )
            self.servers[spec.name] = server
            log.info("listening", listener=spec.name, host=self.host, port=spec.port)

    def stop_accepting(self) -> None:
        for server in self.servers.values():
            server.close()

    async def wait_closed(self) -> None:
        for server in self.servers.values():
            await server.wait_closed()
        self.servers.clear()
