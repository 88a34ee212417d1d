"""Remote MXs for the relay tests: aiosmtpd servers on 127.0.0.x that record what they
accept and answer from a script (e.g. ``451`` twice, then accept).

``pipelining`` makes the server offer PIPELINING (RFC 2920) and hold back its replies to
RSET, MAIL and RCPT until DATA arrives, as RFC 2920 §3.2 lets a server do: a client that
waits for each reply before the next command never gets one, so only a pipelining client
gets through. ``drop`` names the points where the server drops the connection, once
each: ``rcpt`` (at the first RCPT), ``data`` (the text received, not kept) and ``stored``
(the text kept, the connection dropped before the 250: the RFC 5321 §6.1 duplicate)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

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
        mail: list[str | None] | None = None,
        data: list[str | None] | None = None,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
        port: int | None = None,
        logins: dict[str, str] | None = None,
        pipelining: bool = False,
        drop: set[str] | None = None,
    ) -> None:
        self.host = host
        self.pipelining = pipelining
        self.drop = set(drop or ())
        self.resets = 0  # RSET commands
        self.rset_reply = "250 OK"
        self.port = port or free_port(host)
        self.rcpt = Script(list(rcpt or []))
        self.mail = Script(list(mail or []))
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
        self.controller = _Controller(
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
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.resets += 1
        return self.rset_reply

    def _dropping(self, point: str, server: Any) -> bool:
        with self._lock:
            if point not in self.drop:
                return False
            self.drop.discard(point)
        server.transport.close()
        return True

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        with self._lock:
            self.transactions += 1
            reply = self.mail.next()
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._dropping("rcpt", server):
            return "421 4.3.0 gone"  # never arrives: the connection is closed
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
            if self._dropping("data", server):
                return "421 4.3.0 gone"
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
            if self._dropping("stored", server):
                return "421 4.3.0 gone"
            return "250 2.0.0 queued"
        finally:
            with self._lock:
                self.active -= 1


class _Controller(Controller):
    def factory(self) -> SMTP:
        handler = self.handler
        if isinstance(handler, Sink) and handler.pipelining:
            return _WithholdingSMTP(handler, **self.SMTP_kwargs)
        return super().factory()  # type: ignore[no-any-return]


class _WithholdingSMTP(SMTP):
    """Replies to RSET, MAIL and RCPT wait until DATA comes (RFC 2920 §3.2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: list[str | bytes] = []
        self._holding = False

    async def push(self, status: Any) -> None:
        if self._holding:
            self._held.append(status)
            return
        await super().push(status)

    async def _hold(self, command: Any, arg: Any) -> None:
        self._holding = True
        try:
            await command(arg)
        finally:
            self._holding = False

    async def smtp_RSET(self, arg: str) -> None:
        await self._hold(super().smtp_RSET, arg)

    async def smtp_MAIL(self, arg: Any) -> None:
        await self._hold(super().smtp_MAIL, arg)

    async def smtp_RCPT(self, arg: Any) -> None:
        await self._hold(super().smtp_RCPT, arg)

    async def smtp_DATA(self, arg: str) -> None:
        held, self._held = self._held, []
        for status in held:
            await super().push(status)
        await super().smtp_DATA(arg)
