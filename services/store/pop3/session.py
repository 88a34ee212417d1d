"""One POP3 session: the RFC 1939 §3 state machine and its dispatch tables.

AUTHORIZATION (greeting, STLS, USER/PASS, AUTH) → TRANSACTION (the maildrop commands) →
UPDATE (QUIT applies the deletions, then the connection closes). A connection that ends
any other way — dropped, timed out, server stopping — never reaches UPDATE and changes
nothing (RFC 1939 §6).

Commands are looked up in a table per state (no getattr dispatch); handlers live in
``handlers/`` by command family. Every exception a handler lets through becomes a reply
in ``errors.py``; internal failures never show their text to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mailcore import metrics
from mailcore.directory import User
from mailcore.logging import bind, get_logger
from mailcore.mailstore import MailStore
from services.store.auth import Authenticator, ConnectionLimiter
from services.store.listener import DEFAULT_WRITE_TIMEOUT, Connection
from services.store.pop3 import errors, parser, replies
from services.store.pop3.handlers import auth as auth_commands
from services.store.pop3.handlers import maildrop as maildrop_commands
from services.store.pop3.lock import Lease, MaildropLocks
from services.store.pop3.maildrop import Maildrop
from services.store.pop3.replies import Reply

log = get_logger("pop3")


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


@dataclass
class Pop3Env:
    """What every session of one server shares."""

    authenticator: Authenticator
    locks: MaildropLocks
    store: MailStore
    limiter: ConnectionLimiter
    tls_context: ssl.SSLContext | None  # for STLS; None: STLS not offered
    # RFC 1939 §3: an inactivity autologout timer of at least 10 minutes.
    idle_timeout: float = 600.0
    # Before login a much shorter one (StoreSettings.login_timeout): an unauthenticated
    # connection holds a slot of the connection caps and costs nothing to open.
    login_timeout: float = 60.0
    max_bad_commands: int = 10
    # A response the client leaves unread this long drops the connection (and with it
    # the maildrop lock): a client that stops reading mid-RETR cannot hold it forever.
    write_timeout: float = DEFAULT_WRITE_TIMEOUT


class LineTooLong:
    """What :meth:`Session.read_line` returns for a line over the limit (already drained)."""


TOO_LONG = LineTooLong()

Handler = Callable[["Session", Any], Awaitable[None]]

DISPATCH: dict[State, dict[type[Any], Handler]] = {
    State.AUTHORIZATION: auth_commands.HANDLERS,
    State.TRANSACTION: maildrop_commands.HANDLERS,
    State.UPDATE: {},
}

_LOGIN_COMMANDS = (parser.User, parser.Pass, parser.Auth)
_COUNTERS: dict[tuple[str, str], Any] = {}


def _count(command: str, status: str) -> None:
    """POP3_COMMANDS; the label children are looked up once (a bounded set of names)."""
    counter = _COUNTERS.get((command, status))
    if counter is None:
        counter = _COUNTERS[command, status] = metrics.POP3_COMMANDS.labels(command, status)
    counter.inc()


class Session:
    def __init__(self, conn: Connection, env: Pop3Env) -> None:
        self.conn = conn
        self.env = env
        self.state = State.AUTHORIZATION
        self.pending_user: str | None = None  # after USER, until PASS
        self.user: User | None = None
        self.maildrop: Maildrop | None = None
        self.closing = False
        self._lease: Lease | None = None
        self._user_slot: str | None = None
        self._bad_commands = 0
        self._waiting = False  # blocked reading the next command
        self._last_ok = True
        self._loop = asyncio.get_running_loop()
        # RFC 1939 §3 autologout: one timer per session, re-armed lazily (no timer per
        # command); it fires only when a read has waited ``idle_timeout`` seconds.
        self._deadline = self._loop.time() + env.login_timeout
        self._idle_timer: asyncio.TimerHandle | None = None

    @property
    def timeout(self) -> float:
        """The autologout for the next read: short until the client has logged in."""
        if self.state is State.AUTHORIZATION:
            return self.env.login_timeout
        return self.env.idle_timeout

    # --- life cycle -----------------------------------------------------------------------
    async def run(self) -> None:
        metrics.POP3_SESSIONS.inc()
        watcher = asyncio.create_task(self._watch_stopping(), name=f"{self.conn.conn_id}-stop")
        self._idle_timer = self._loop.call_at(self._deadline, self._check_idle)
        try:
            self.write(replies.GREETING.line)
            while not self.closing:
                line = await self.read_line(parser.MAX_COMMAND_LINE)
                if line is None:
                    break
                if self.conn.stopping.is_set():
                    await self.send(replies.SHUTTING_DOWN)
                    break
                await self._handle(line)
                if self.conn.stopping.is_set() and not self.closing:
                    await self.send(replies.SHUTTING_DOWN)
                    break
            with contextlib.suppress(ConnectionError):
                await self.conn.drain()
        finally:
            watcher.cancel()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self.release()
            metrics.POP3_SESSIONS.dec()

    async def _watch_stopping(self) -> None:
        """Server stopping: a session idle between commands says goodbye and ends now; a
        busy one finishes its command first (checked in :meth:`run`)."""
        await self.conn.stopping.wait()
        if self._waiting and not self.closing:
            self.closing = True
            with contextlib.suppress(Exception):
                self.write(replies.SHUTTING_DOWN.line)
                await asyncio.wait_for(self.conn.writer.drain(), 5)
            self.conn.close()

    def _check_idle(self) -> None:
        now = self._loop.time()
        if self._waiting and now >= self._deadline and not self.closing:
            log.info("idle timeout")
            self.closing = True
            self._idle_timer = None
            self.write(replies.IDLE_TIMEOUT.line)
            self.conn.close()  # the pending read ends; the goodbye is flushed first
            return
        when = self._deadline if self._waiting else now + self.timeout
        self._idle_timer = self._loop.call_at(when, self._check_idle)

    def hold(self, lease: Lease | None, user_slot: str | None) -> None:
        """Take charge of the maildrop lock and the per-user connection slot: from now on
        they are released when the session ends, however it ends (cancellation too)."""
        self._lease = lease
        self._user_slot = user_slot

    def enter_transaction(self, user: User, md: Maildrop) -> None:
        """RFC 1939 §4: authenticated and the maildrop is locked and opened."""
        self.user = user
        self.maildrop = md
        self.pending_user = None
        self.state = State.TRANSACTION
        bind(user=user.address)

    def enter_update(self) -> None:
        """RFC 1939 §6: QUIT from TRANSACTION; the session ends after the update."""
        self.state = State.UPDATE
        self.closing = True

    def release(self) -> None:
        if self._lease is not None:
            self.env.locks.release(self._lease)
            self._lease = None
        if self._user_slot is not None:
            self.env.limiter.close_user(self._user_slot)
            self._user_slot = None
        self.maildrop = None

    # --- input ------------------------------------------------------------------------------
    async def read_line(self, limit: int) -> bytes | LineTooLong | None:
        """The next line; TOO_LONG for a line over ``limit`` (read and dropped); None at
        end of input or after the idle timeout (the goodbye is already sent)."""
        reader = self.conn.reader
        self._deadline = self._loop.time() + self.timeout
        self._waiting = True
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            try:
                await self._drop_line(exc.consumed)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            return TOO_LONG
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        finally:
            self._waiting = False
        if len(line) > limit:
            return TOO_LONG
        return line

    async def _drop_line(self, consumed: int) -> None:
        """Discard an overlong line up to its LF without holding it in memory."""
        reader = self.conn.reader
        while True:
            await reader.readexactly(consumed)
            try:
                await reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                consumed = exc.consumed

    # --- output -----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.conn.writer.write(data)

    async def send(self, reply: Reply) -> None:
        self._last_ok = reply.ok
        self.conn.writer.write(reply.line)
        await self.conn.drain()

    async def send_lines(self, first: Reply, lines: list[bytes]) -> None:
        """A multi-line response whose lines need no byte-stuffing (listings, CAPA)."""
        self._last_ok = first.ok
        self.conn.writer.write(b"".join([first.line, *lines, replies.END_OF_LIST]))
        await self.conn.drain()

    def mark_sent(self, ok: bool) -> None:
        """For handlers that write a status line themselves (RETR/TOP)."""
        self._last_ok = ok

    def abort(self) -> None:
        """Stop mid-response (the multi-line response cannot be finished)."""
        self.closing = True
        self.conn.close()

    # --- commands ---------------------------------------------------------------------------
    async def _handle(self, line: bytes | LineTooLong) -> None:
        if isinstance(line, LineTooLong):
            _count("unknown", "bad")
            await self.bad_command(replies.LINE_TOO_LONG)
            return
        try:
            cmd = parser.parse_command(line)
        except parser.ParseError as exc:
            _count(exc.command or "unknown", "bad")
            await self.bad_command(errors.reply_for_parse_error(exc))
            return
        name = type(cmd).__name__.upper()
        handler = DISPATCH[self.state].get(type(cmd))
        if handler is None:
            _count(name, "bad")
            await self.bad_command(self._wrong_state_reply(cmd))
            return
        try:
            await handler(self, cmd)
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception as exc:
            reply = errors.reply_for(exc)
            if reply is replies.INTERNAL_ERROR:
                log.exception("command failed", command=name)
            await self.send(reply)
        _count(name, "ok" if self._last_ok else "err")

    def _wrong_state_reply(self, cmd: parser.Command) -> Reply:
        if self.state is State.AUTHORIZATION and type(cmd) in DISPATCH[State.TRANSACTION]:
            return replies.NOT_AUTHENTICATED
        if self.state is State.TRANSACTION and isinstance(cmd, _LOGIN_COMMANDS):
            return replies.ALREADY_AUTHENTICATED
        return replies.WRONG_STATE

    async def bad_command(self, reply: Reply) -> None:
        """A bad command is answered; too many of them end the session."""
        self._bad_commands += 1
        await self.send(reply)
        if self._bad_commands >= self.env.max_bad_commands:
            log.info("too many bad commands")
            await self.send(replies.TOO_MANY_BAD_COMMANDS)
            self.closing = True
