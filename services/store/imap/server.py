"""The IMAP server: listeners wired to sessions.

``imap_port`` in the clear with STARTTLS (RFC 3501 §6.2.1) and ``imaps_port`` with TLS
from the first byte (RFC 8314 §3.3). A port of 0 in the settings switches a listener off.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from mailcore import metrics
from mailcore.config import StoreSettings
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.loginguard import LoginGuard
from mailcore.mailstore import MailStore
from services.store.auth import (
    Authenticator,
    ConnectionLimiter,
    LoginThrottle,
    PlaintextPolicy,
    Refusal,
    parse_networks,
)
from services.store.imap.dispatch import DISPATCH
from services.store.imap.runtime import Runtime, SearchGate
from services.store.imap.session import Session
from services.store.listener import Connection, Listener

log = get_logger("imap")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int  # 0: any free port (tests)
    implicit_tls: bool = False


@dataclass
class ImapServer:
    rt: Runtime
    endpoints: list[Endpoint]
    listeners: list[Listener] = field(default_factory=list)
    backlog: int = 1024
    reuse_port: bool = False  # several processes serve these ports (imap_workers > 1)

    @classmethod
    def from_settings(
        cls,
        settings: StoreSettings,
        *,
        store: MailStore,
        directory: Directory,
        tls_context: ssl.SSLContext | None,
        limiter: ConnectionLimiter | None = None,
        throttle: LoginThrottle | None = None,
        guard: LoginGuard | None = None,
    ) -> ImapServer:
        """``limiter`` and ``throttle`` may be shared with POP3, so that connection caps
        and failed-login counts span both protocols (in this process: each IMAP worker
        process has its own)."""
        s = settings
        rt = Runtime(
            store=store,
            directory=directory,
            auth=Authenticator(
                directory,
                policy=PlaintextPolicy(s.allow_plaintext_auth),
                throttle=throttle or LoginThrottle(s.auth_fail_delay),
                protocol="imap",
                guard=guard,
            ),
            limiter=limiter
            or ConnectionLimiter(
                s.max_connections_per_ip, s.max_connections_per_user, s.max_connections
            ),
            hostname=s.hostname,
            tls_context=tls_context,
            max_message_size=s.max_message_size,
            idle_timeout=s.imap_idle_timeout,
            login_timeout=s.login_timeout,
            write_timeout=s.write_timeout,
            searches=SearchGate(s.imap_search_scans),
            search_timeout=s.imap_search_timeout,
            trusted_id_networks=parse_networks(s.webmail_trusted_networks),
        )
        imap_port, imaps_port = s.imap_port, s.imaps_port
        endpoints = []
        if imap_port:
            endpoints.append(Endpoint(s.listen_host, imap_port))
        if imaps_port:
            if tls_context is None:
                log.warning("IMAPS listener off: no TLS certificate", port=imaps_port)
            else:
                endpoints.append(Endpoint(s.listen_host, imaps_port, implicit_tls=True))
        return cls(rt, endpoints, backlog=s.listen_backlog, reuse_port=s.imap_workers > 1)

    async def start(self) -> None:
        for ep in self.endpoints:
            listener = Listener(
                "imaps" if ep.implicit_tls else "imap",
                ep.host,
                ep.port,
                self._session,
                limiter=self.rt.limiter,
                ssl_context=self.rt.tls_context if ep.implicit_tls else None,
                on_refused=_refuse,
                write_timeout=self.rt.write_timeout,
                backlog=self.backlog,
                reuse_port=self.reuse_port,
            )
            await listener.start()
            self.listeners.append(listener)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting; idle sessions say BYE at once, busy ones finish their command."""
        for listener in self.listeners:
            await listener.stop(grace)
        self.listeners.clear()

    def port(self, implicit_tls: bool = False) -> int:
        name = "imaps" if implicit_tls else "imap"
        return next(li.port for li in self.listeners if li.name == name)

    def bound_ports(self) -> tuple[int, int]:
        """(IMAP, IMAPS) as bound, 0 for a listener that is off."""
        found = {li.name: li.port for li in self.listeners}
        return found.get("imap", 0), found.get("imaps", 0)

    @property
    def open_sessions(self) -> int:
        return sum(li.open_sessions for li in self.listeners)

    async def _session(self, conn: Connection) -> None:
        metrics.IMAP_SESSIONS.inc()
        try:
            await Session(conn, self.rt, DISPATCH).run()
        finally:
            metrics.IMAP_SESSIONS.dec()


async def _refuse(conn: Connection, why: Refusal) -> None:
    # RFC 3501 §7.1.5: BYE as the greeting refuses the connection
    if why is Refusal.SERVER_BUSY:
        conn.writer.write(b"* BYE [UNAVAILABLE] Server busy: too many connections\r\n")
    else:
        conn.writer.write(b"* BYE [UNAVAILABLE] Too many connections from your address\r\n")
    await conn.drain()
