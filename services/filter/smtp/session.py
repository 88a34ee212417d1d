"""One SMTP session: the state machine and its dispatch table.

aiosmtpd's ``SMTP`` protocol carries the connection (transport, STARTTLS handshake, idle
timer; implicit TLS is started here, after any PROXY header); the conversation is ours:
:mod:`framing` cuts lines and DATA (refusing bare CR/LF, the smuggling class of
CVE-2023-51764), :mod:`parser` reads commands, and ``COMMANDS`` sends each verb to its
handler module. Replies are batched while pipelined commands are
waiting (RFC 2920 §3.2) and flushed before the session waits for input.
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, TLSSetupException

from mailcore import metrics
from mailcore.logging import bind, connection_context, get_logger, next_connection_id
from services.filter.context import FilterContext
from services.filter.listeners import ListenerSpec
from services.filter.proxy import Peer, read_header
from services.filter.smtp import framing, replies
from services.filter.smtp.handlers import auth, basic, data, envelope, hello
from services.filter.smtp.parser import NotUtf8, parse_command
from services.filter.smtp.replies import Reply
from services.filter.smtp.state import SessionState

log = get_logger("filter.smtp")

READ_CHUNK = 64 * 1024
PROXY_TIMEOUT = 10.0
JOIN_IN_THREAD = 1024 * 1024  # a message this large is joined off the event loop
HANDSHAKE_TIMEOUT = 60  # seconds, implicit TLS (asyncio's own default for ssl= servers)


class ConnectionClosed(Exception):
    """The client went away."""


CommandHandler = Callable[["Session", str], Awaitable[None]]

COMMANDS: dict[str, CommandHandler] = {
    "EHLO": hello.ehlo,
    "HELO": hello.helo,
    "MAIL": envelope.mail,
    "RCPT": envelope.rcpt,
    "RSET": envelope.rset,
    "DATA": data.data,
    "AUTH": auth.auth,
    "STARTTLS": basic.starttls,
    "NOOP": basic.noop,
    "QUIT": basic.quit,
    "VRFY": basic.vrfy,
    "HELP": basic.help_,
    "EXPN": basic.not_implemented,
    "TURN": basic.not_implemented,
    "ETRN": basic.not_implemented,
}


def session_factory(ctx: FilterContext) -> Callable[[ListenerSpec], Session]:
    """Sessions for every listener, built from one pristine template per TLS mode."""
    templates: dict[bool, dict[str, Any]] = {}

    def make(spec: ListenerSpec) -> Session:
        template = templates.get(spec.implicit_tls)
        if template is None:
            template = templates[spec.implicit_tls] = dict(Session(ctx, spec).__dict__)
        return Session(ctx, spec, template=template)

    return make


class _NoHooks:
    """aiosmtpd looks for ``handle_*`` hooks on a handler object; we use none."""


_NO_HOOKS = _NoHooks()


class Session(SMTP):
    # aiosmtpd sizes its StreamReader with this; SMTP's own limits are enforced by framing.
    line_length_limit = READ_CHUNK

    def __init__(
        self,
        ctx: FilterContext,
        listener: ListenerSpec,
        *,
        template: dict[str, Any] | None = None,
    ) -> None:
        if template is None:
            super().__init__(
                _NO_HOOKS,
                data_size_limit=ctx.settings.max_message_size,
                enable_SMTPUTF8=True,
                hostname=ctx.hostname,
                tls_context=None if listener.implicit_tls else ctx.tls,
                timeout=ctx.settings.command_timeout,
            )
        else:
            # aiosmtpd's __init__ reflects over the class (inspect.getmembers, dir) for
            # every connection, ~120 µs. A never-connected instance holds exactly what it
            # sets, so copy that, then give this connection a stream of its own.
            self.__dict__.update(template)
            reader = asyncio.StreamReader(limit=self.line_length_limit, loop=self.loop)
            asyncio.StreamReaderProtocol.__init__(
                self, reader, client_connected_cb=self._cb_client_connected, loop=self.loop
            )
        self.ctx = ctx
        self.listener = listener
        self.state = SessionState(listener, "", "", 0, tls=listener.implicit_tls)
        self._lines = framing.LineBuffer()
        self._out: list[bytes] = []
        self._closing = False
        self._session_timer: asyncio.TimerHandle | None = None
        self.on_lost: Callable[[Session], None] | None = None
        self._waiting = False
        self._idle_deadline = 0.0
        self._lost = False

    # --- connection life cycle (aiosmtpd's protocol callbacks) -------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgraded = self._original_transport is not None
        super().connection_made(transport)
        if upgraded:
            # RFC 3207 §4.2: nothing the client sent before the handshake survives it
            # (aiosmtpd clears its reader; this clears our line buffer).
            self._lines.clear()
        elif self._session_timer is None:
            self._session_timer = self.loop.call_later(
                self.ctx.settings.session_timeout, self._timeout_cb
            )

    def connection_lost(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if self._session_timer is not None:
            self._session_timer.cancel()
        super().connection_lost(error)
        if self.on_lost is not None:
            self.on_lost(self)

    def eof_received(self) -> bool | None:
        # aiosmtpd cancels the conversation and keeps the transport half-open; if the task
        # was cancelled before it ever ran (a port probe), nothing would close it. The
        # client has finished sending: let the transport close.
        super().eof_received()
        return False

    def _reset_timeout(self, duration: float | None = None) -> None:
        """The idle timer, re-armed lazily: a command only moves a deadline; the timer
        callback looks at it and sleeps on if it moved (aiosmtpd cancels and schedules a
        timer for every command)."""
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or deadline < handle.when():
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
            return
        self._timeout_cb()

    def _timeout_cb(self) -> None:
        transport: Any = self.transport
        if transport is None:
            return
        if not transport.is_closing():
            # RFC 5321 §4.5.3.2: a server that gives up on a client says so with 421.
            with contextlib.suppress(Exception):
                transport.write(replies.TIMEOUT.line)
        log.info("session timed out")
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def handle_exception(self, error: Exception) -> str:
        """An internal failure: 451 4.3.0 and a log line; never the exception's text."""
        log.error("internal error", error=type(error).__name__, exc_info=error)
        metrics.SMTP_REJECTED.labels("internal").inc()
        return str(replies.INTERNAL)

    # --- the conversation ----------------------------------------------------------------
    async def _handle_client(self) -> None:
        peer: Any = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            ip, port = str(peer[0]), int(peer[1])
        else:
            ip, port = "unknown", 0
        conn_id = next_connection_id("smtp")
        with connection_context(conn=conn_id, peer=ip, listener=self.listener.name):
            health_check = False
            if self.listener.proxied:
                real = await read_header(
                    self._reader, Peer(ip, port), self.ctx.trusted_proxies, PROXY_TIMEOUT
                )
                if real is None:
                    self._close()
                    return
                ip, port, health_check = real.ip, real.port, real.local
                bind(peer=ip)
            # A proxy's health check connects, says LOCAL and hangs up: no news worth a log line.
            if self.listener.implicit_tls and not await self._start_implicit_tls(
                quiet=health_check
            ):
                self._tls_failed()
                return
            if not self.ctx.connections.acquire(ip):
                metrics.SMTP_REJECTED.labels("connection_limit").inc()
                log.info("connection limit reached")
                await self._write_now(replies.TOO_MANY_CONNECTIONS.line)
                self._close()
                return
            gauge = metrics.SMTP_SESSIONS.labels(self.listener.name)
            gauge.inc()
            try:
                tls = self.listener.implicit_tls
                self.state = SessionState(self.listener, conn_id, ip, port, tls)
                if self.listener.implicit_tls:
                    self.state.tls_version = self._tls_version()
                await self._converse()
            except (ConnectionClosed, ConnectionError):
                pass
            finally:
                gauge.dec()
                self.ctx.connections.release(ip)
                # Whatever ended the conversation (EOF, cancellation, an error), the
                # transport goes too: aiosmtpd keeps a half-closed one open otherwise.
                self._close()

    async def _converse(self) -> None:
        if self.ctx.stopping:
            self.reply(replies.SHUTTING_DOWN)
        else:
            self.reply(replies.GREETING.with_text(f"{self.ctx.hostname} ESMTP Postern"))
        while not self._closing:
            await self._dispatch(await self._next_line())
        await self._flush()
        self._close()

    async def _dispatch(self, line: bytes | framing.TooLong) -> None:
        if isinstance(line, framing.TooLong):
            self.error(replies.LINE_TOO_LONG)
            return
        text = framing.command_text(line)
        if text is None:
            self.error(replies.BARE_LINE_ENDING)
            return
        try:
            command = parse_command(text)
        except NotUtf8:
            self.error(replies.BAD_UTF8)
            return
        handler = COMMANDS.get(command.verb)
        if handler is None:
            self.error(replies.UNKNOWN_COMMAND)
            return
        self._reset_timeout()
        try:
            await handler(self, command.arg)
        except TLSSetupException:
            log.info("TLS handshake failed")
            self._closing = True
            self._tls_failed()
        except (ConnectionClosed, ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self.state.tx = None
            status = await self.handle_exception(exc)
            self._out.append(status.encode() + b"\r\n")

    # --- what handlers use ----------------------------------------------------------------
    def reply(self, reply: Reply) -> None:
        self._out.append(reply.line)
        if reply.closes:
            self._closing = True

    def send(self, raw: bytes) -> None:
        self._out.append(raw)

    def close_after_reply(self) -> None:
        self._closing = True

    def error(self, reply: Reply) -> None:
        """A bad command: reply, and end the session after too many of them."""
        self.reply(reply)
        self.count_error()

    def reject(self, reply: Reply, reason: str, *, counts: bool = False) -> None:
        """A refusal by policy or content, counted in the metrics."""
        metrics.SMTP_REJECTED.labels(reason).inc()
        self.reply(reply)
        if counts:
            self.count_error()

    def count_error(self) -> None:
        self.state.errors += 1
        if self.state.errors >= self.ctx.settings.max_bad_commands and not self._closing:
            log.info("too many errors", errors=self.state.errors)
            self.reply(replies.TOO_MANY_ERRORS)

    def hold_timeout(self) -> None:
        """Screening and hand-off may take longer than an idle client is allowed."""
        s = self.ctx.settings
        handoff = max(s.handoff_timeout, s.handoff_patience)
        self._reset_timeout(max(s.command_timeout, s.scan_timeout + handoff + 30))

    def release_timeout(self) -> None:
        """Back to the command timeout once the message is answered."""
        self._reset_timeout()

    async def read_line(self) -> bytes | None:
        """One client line outside command dispatch (AUTH responses): its text, or None
        when it is too long or not CRLF-terminated."""
        line = await self._next_line()
        if isinstance(line, framing.TooLong):
            return None
        return framing.command_text(line)

    async def read_data(self, max_size: int) -> bytes | framing.DataProblem:
        """The message after 354, up to ``<CRLF>.<CRLF>`` (see framing.DataReader)."""
        reader = framing.DataReader(max_size)
        rest = reader.feed(self._lines.take())
        while not reader.done:
            await self._flush()
            chunk = await self._reader.read(READ_CHUNK)
            if not chunk:
                raise ConnectionClosed
            self._reset_timeout()
            rest = reader.feed(chunk)
        self._lines.feed(rest)
        if reader.problem is None and reader.size > JOIN_IN_THREAD:
            # Checks and unstuffing were done piece by piece as the data came; what is
            # left is one copy of the whole message, which need not hold up the loop.
            return await asyncio.to_thread(reader.result)
        return reader.result()

    async def _start_implicit_tls(self, *, quiet: bool = False) -> bool:
        """RFC 8314 §3.3: TLS from the first octet (after the PROXY header, if any: HAProxy's
        ``send-proxy-v2`` sends it in the clear, before the handshake). Whether it worked.

        The client's first TLS bytes may have come in one read with the PROXY header and
        wait in the stream reader's buffer: they go to the TLS layer before anything else.
        The bookkeeping is aiosmtpd's STARTTLS (``_tls_protocol``, ``_original_transport``),
        so its ``connection_made`` switches the streams over once the handshake is done.
        """
        assert self.ctx.tls is not None  # Listeners.start refuses implicit TLS without one
        raw: Any = self.transport
        reader: Any = self._reader
        early = bytes(reader._buffer)
        reader._buffer.clear()
        waiter = self.loop.create_future()
        protocol = sslproto.SSLProtocol(
            self.loop,
            self,
            self.ctx.tls,
            waiter,
            server_side=True,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
        )
        self._tls_protocol = protocol
        self._original_transport = raw
        raw.set_protocol(protocol)
        self.transport = protocol._app_transport
        protocol.connection_made(raw)
        if not raw.is_closing() and not raw.is_reading():
            raw.resume_reading()  # the stream reader had paused it (a flood before TLS)
        view = memoryview(early)
        while view and not raw.is_closing():
            buffer = protocol.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT + 5):
                await waiter
        except asyncio.CancelledError:
            self._tls_failed()
            raise
        except Exception as exc:
            (log.debug if quiet else log.info)("TLS handshake failed", error=type(exc).__name__)
            return False
        return self._tls_version() is not None

    def _tls_failed(self) -> None:
        """asyncio's TLS layer tells its protocol nothing when a handshake fails (it reports
        ``connection_lost`` only after one succeeded), so the session ends itself here: the
        connection goes, and the node forgets the session."""
        raw: Any = self._original_transport
        if raw is not None:
            raw.abort()
        if self.session is not None and not self._lost:
            self.connection_lost(None)

    async def start_tls(self) -> None:
        await self._flush()
        self._lines.clear()  # RFC 3207 §4.2: pipelined plaintext after STARTTLS is dropped
        await self.smtp_STARTTLS("")  # aiosmtpd: "220 Ready to start TLS", then handshake
        self.state.reset_after_tls()
        self.state.tls_version = self._tls_version()

    @property
    def tls_offered(self) -> bool:
        return self.ctx.tls is not None and not self.state.tls

    @property
    def auth_offered(self) -> bool:
        """RFC 4954 §4 and RFC 3207 §6: AUTH only on submission ports, and only over TLS
        unless ``allow_plaintext_auth`` permits this client."""
        st = self.state
        if not self.listener.submission or st.user is not None:
            return False
        return st.tls or self.ctx.plaintext_auth_allowed(st.client_ip)

    # --- plumbing ----------------------------------------------------------------------------
    async def _next_line(self) -> bytes | framing.TooLong:
        while True:
            line = self._lines.next_line()
            if line is not None:
                return line
            if self.ctx.stopping:
                self.reply(replies.SHUTTING_DOWN)
                await self._flush()
                raise ConnectionClosed
            await self._flush()
            self._waiting = True
            try:
                chunk = await self._reader.read(READ_CHUNK)
            finally:
                self._waiting = False
            if not chunk:
                raise ConnectionClosed
            self._lines.feed(chunk)

    def shutdown(self) -> None:
        """The node is stopping: a session waiting for its client's next command ends now
        with 421; one busy with a message ends after it has answered it."""
        transport: Any = self.transport
        if not self._waiting or transport is None or transport.is_closing():
            return
        self._out.append(replies.SHUTTING_DOWN.line)
        with contextlib.suppress(Exception):
            transport.write(b"".join(self._out))
        self._out.clear()
        self._close()

    async def _flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        await self._write_now(data)

    async def _write_now(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionClosed
        self._writer.write(data)
        await self._writer.drain()

    def abort(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abort()

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _tls_version(self) -> str | None:
        if self.transport is None:
            return None
        ssl_object: Any = self.transport.get_extra_info("ssl_object")
        return str(ssl_object.version()) if ssl_object is not None else None
