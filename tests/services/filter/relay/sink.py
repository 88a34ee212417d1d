"""Remote MXs for the relay tests: aiosmtpd servers on 127.0.0.x that record what they
accept and answer from a script (e.g. ``451`` twice, then accept)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.ctl.daemons import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool


@dataclass
class Script:
    """Replies to hand out in turn (``None`` = accept); empty = accept."""

    replies: list[str | None] = field(default_factory=list)

    def next(self) -> str | None:
        return self.replies.pop(0) if self.replies else None


class Sink:
    def __init__(
        self,
        host: str = "127.0.0.2",
        *,
        rcpt: list[str | None] | None = None,
        data: list[str | None] | None = None,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
        port: int | None = None,
        logins: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.rcpt = Script(list(rcpt or []))
        self.data = Script(list(data or []))
        self.delay = delay
        self.messages: list[Received] = []
        self.sessions = 0  # EHLOs: new connections
        self.transactions = 0  # MAIL commands
        self.data_commands = 0
        self.active = 0
        self.max_active = 0
        self.hold = threading.Event()  # set: DATA answers; clear + holding: DATA waits
        self.hold.set()
        self.holding = threading.Event()
        self.held: Any = None  # the session held in DATA
        self._lock = threading.Lock()
        self.logins = logins
        self.authenticated: list[str] = []
        auth: dict[str, Any] = {}
        if logins is not None:
            auth = {"authenticator": self._authenticate, "auth_required": True}
        self.controller = Controller(
            self,
            hostname=host,
            port=self.port,
            tls_context=tls,
            require_starttls=False,
            ready_timeout=10,
            **auth,
        )

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        user = data.login.decode() if isinstance(data, LoginPassword) else ""
        ok = self.logins is not None and self.logins.get(user) == data.password.decode()
        if ok:
            self.authenticated.append(user)
        return AuthResult(success=ok, handled=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.hold.set()
        self.controller.stop()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        with self._lock:
            self.transactions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            reply = self.rcpt.next()
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.data_commands += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if not self.hold.is_set():
                self.held = server
                self.holding.set()
                await asyncio.to_thread(self.hold.wait)
            if self.delay:
                await asyncio.sleep(self.delay)
            with self._lock:
                reply = self.data.next()
            if reply is not None:
                return reply
            transport = server.transport
            if transport is None or transport.is_closing():
                return "421 4.4.2 client gone"  # never answered: not taken
            with self._lock:
                self.messages.append(
                    Received(
                        envelope.mail_from,
                        list(envelope.rcpt_tos),
                        bytes(envelope.original_content or envelope.content),
                        session.ssl is not None,
                    )
                )
            return "250 2.0.0 queued"
        finally:
            with self._lock:
                self.active -= 1
