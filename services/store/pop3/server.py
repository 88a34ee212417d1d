"""The POP3 server: listeners wired to sessions.

Two listeners by default (``StoreSettings``): ``pop3_port`` in the clear with STLS
(RFC 2595 §4) and ``pop3s_port`` with TLS from the first byte (RFC 8314 §3.3, "POP3S").
A port of 0 in the settings switches that listener off. Every session of the server shares
one :class:`~services.store.pop3.lock.MaildropLocks`, so the lock holds across both ports.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

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
)
from services.store.listener import Connection, Listener
from services.store.pop3.lock import MaildropLocks
from services.store.pop3.replies import err
from services.store.pop3.session import Pop3Env, Session

log = get_logger("pop3")

TOO_MANY_FROM_PEER = err("Too many connections from your address", "SYS/TEMP").line
SERVER_BUSY = err("Server busy: too many connections", "SYS/TEMP").line


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int  # 0: any free port (tests); see Pop3Server.from_settings for "off"
    implicit_tls: bool = False


@dataclass
class Pop3Server:
    env: Pop3Env
    endpoints: list[Endpoint]
    listeners: list[Listener] = field(default_factory=list)
    backlog: int = 1024

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
    ) -> Pop3Server:
        """The server the store runs. ``limiter`` and ``throttle`` may be shared with IMAP,
        so that connection caps and failed-login counts span both protocols."""
        s = settings
        authenticator = Authenticator(
            directory,
            policy=PlaintextPolicy(s.allow_plaintext_auth),
            throttle=throttle or LoginThrottle(s.auth_fail_delay),
            protocol="pop3",
            guard=guard,
        )
        env = Pop3Env(
            authenticator=authenticator,
            locks=MaildropLocks(),
            store=store,
            limiter=limiter
            or ConnectionLimiter(
                s.max_connections_per_ip, s.max_connections_per_user, s.max_connections
            ),
            tls_context=tls_context,
            idle_timeout=s.pop3_idle_timeout,
            login_timeout=s.login_timeout,
            max_bad_commands=s.pop3_max_bad_commands,
            write_timeout=s.write_timeout,
        )
        endpoints = []
        if s.pop3_port:
            endpoints.append(Endpoint(s.listen_host, s.pop3_port))
        if s.pop3s_port:
            if tls_context is None:
                log.warning("POP3S listener off: no TLS certificate", port=s.pop3s_port)
            else:
                endpoints.append(Endpoint(s.listen_host, s.pop3s_port, implicit_tls=True))
        return cls(env, endpoints, backlog=s.listen_backlog)

    async def start(self) -> None:
        for ep in self.endpoints:
            listener = Listener(
                "pop3s" if ep.implicit_tls else "pop3",
                ep.host,
                ep.port,
                self._session,
                limiter=self.env.limiter,
                ssl_context=self.env.tls_context if ep.implicit_tls else None,
                on_refused=_refuse,
                write_timeout=self.env.write_timeout,
                backlog=self.backlog,
            )
            await listener.start()
            self.listeners.append(listener)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting; idle sessions say goodbye at once, busy ones finish their
        command (no session reaches UPDATE unless its client sent QUIT)."""
        for listener in self.listeners:
            await listener.stop(grace)
        self.listeners.clear()

    def port(self, implicit_tls: bool = False) -> int:
        """The bound port of the first listener of that kind (tests use port 0)."""
        name = "pop3s" if implicit_tls else "pop3"
        return next(li.port for li in self.listeners if li.name == name)

    @property
    def open_sessions(self) -> int:
        return sum(li.open_sessions for li in self.listeners)

    async def _session(self, conn: Connection) -> None:
        await Session(conn, self.env).run()


async def _refuse(conn: Connection, why: Refusal) -> None:
    conn.writer.write(SERVER_BUSY if why is Refusal.SERVER_BUSY else TOO_MANY_FROM_PEER)
    await conn.drain()
