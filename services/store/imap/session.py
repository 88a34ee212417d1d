"""One IMAP connection: framing (lines and literals, with limits), the state machine
(RFC 3501 §3) and the dispatch table. Command work lives in ``handlers/``."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mailcore import metrics
from mailcore.logging import get_logger
from mailcore.mailstore import MailstoreError
from services.store.imap import errors, responses
from services.store.imap.commands import Request
from services.store.imap.handlers.append import over_quota
from services.store.imap.lexer import MAX_LINE, literal_suffix, tag_of
from services.store.imap.parser import BadCharset, ParseError, UnknownCommand, parse
from services.store.listener import Connection

if TYPE_CHECKING:
    from mailcore.directory import User
    from mailcore.mailstore import Account
    from services.store.imap.notify import Watch
    from services.store.imap.runtime import Runtime
    from services.store.imap.selected import Selected

log = get_logger("imap")

MAX_COMMAND_LITERALS = 64 * 1024  # literal octets allowed in a non-APPEND command
FLUSH_AT = 256 * 1024
# RFC 3502 MULTIAPPEND: each message is held to the message size limit, all of one APPEND
# together to this many times it (the command is read whole before anything is stored)
MULTIAPPEND_TOTAL = 4
_CAT_TEXT = re.compile(rb"(?i)(?:^|[ (])TEXT ~?\{\d+\+?\}$")


# the counter of each (command, status) seen: ``labels()`` takes a lock and builds its
# key on every call; the names come from the dispatch table, so the set stays small
_COUNTERS: dict[tuple[str, str], Any] = {}


def _count(command: str, status: str) -> None:
    child = _COUNTERS.get((command, status))
    if child is None:
        child = _COUNTERS[command, status] = metrics.IMAP_COMMANDS.labels(command, status)
    child.inc()


class State(enum.Enum):
    # RFC 3501 §3
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})

# A handler returns the text of its tagged OK (None: it answered itself), or raises.
Handler = Callable[["Session", Request], Awaitable[str | None]]
# RFC 3501 §7.4.1: which unsolicited updates may precede the tagged reply.
Updates = Literal["all", "no-expunge", "none"]


@dataclass(frozen=True, slots=True)
class Spec:
    run: Handler
    states: frozenset[State]
    updates: Updates = "all"


class CloseSession(Exception):
    """End the connection (the BYE, if any, has been queued)."""


class Session:
    def __init__(self, conn: Connection, rt: Runtime, dispatch: dict[str, Spec]) -> None:
        self.conn = conn
        self.rt = rt
        self.dispatch = dispatch
        self.state = State.NOT_AUTHENTICATED
        self.user: User | None = None
        self.account: Account | None = None
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self.notify: Watch | None = None  # RFC 5465 NOTIFY SET (handlers/notify.py)
        self.out = bytearray()
        self.bad_commands = 0
        # The address the login throttle and logs use: the peer, or the browser's address a
        # trusted webmail node gave in ID x-originating-ip (handlers/misc.py).
        self.client_ip = conn.peer_ip
        # RFC 3516: a client that sent a literal8 or fetched BINARY reads literal8, so NUL
        # octets in BODY[] go to it as they are (handlers/fetch.py); others get 0x80
        self.speaks_binary = False
        self.stopping = False
        self._waiting = False  # between commands (safe to say BYE and close)
        # RFC 3501 §5.4 autologout: when the wait for the current command began, and the
        # one timer that checks it (re-armed lazily, not per command: see _check_idle)
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # --- output -------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.out += data

    def untagged(self, line: str | bytes) -> None:
        self.out += responses.untagged(line)

    async def send_chunks(self, chunks: list[bytes]) -> None:
        """Queue a response made of chunks; a large chunk (a literal) is written as it is,
        after what is queued, instead of being copied into the buffer."""
        for chunk in chunks:
            if len(chunk) >= FLUSH_AT:
                await self.flush()
                self.conn.write(chunk)
                await self.conn.drain()
            else:
                self.out += chunk
        await self.flush_if_large()

    async def flush(self) -> None:
        if self.out:
            # hand the buffer over rather than copying it; a new one takes its place
            data, self.out = self.out, bytearray()
            self.conn.write(data)
        await self.conn.drain()  # bounded: a client that stops reading is dropped

    async def flush_if_large(self) -> None:
        if len(self.out) >= FLUSH_AT:
            await self.flush()

    @property
    def logged_out(self) -> bool:
        return self.state is State.LOGOUT

    # --- capabilities -------------------------------------------------------------------------
    @property
    def plaintext_ok(self) -> bool:
        return self.rt.auth.plaintext_allowed(self.conn.peer_ip, self.conn.tls)

    def capabilities(self) -> list[str]:
        from services.store.imap.capabilities import capabilities

        return capabilities(self)

    @property
    def rev2(self) -> bool:
        """RFC 9051 §6.3.1: IMAP4rev2 behaviour only once the client enabled it."""
        return "IMAP4REV2" in self.enabled

    @property
    def utf8(self) -> bool:
        """RFC 6855 §3 (UTF8=ACCEPT) or RFC 9051: UTF-8 mailbox names and strings."""
        return "IMAP4REV2" in self.enabled or "UTF8=ACCEPT" in self.enabled

    def mbox(self, name: str) -> bytes:
        """A mailbox name on the wire: modified UTF-7, or UTF-8 under IMAP4rev2."""
        return responses.mailbox(name, self.utf8)

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def autologout(self) -> float:
        """RFC 9051 §5.4: the server may use a shorter inactivity timer before
        authentication (``login_timeout``) than the 30 minutes it keeps afterwards."""
        return self.rt.login_timeout if self.user is None else self.rt.idle_timeout

    # --- framing --------------------------------------------------------------------------
    async def read_line(self) -> bytes:
        """One line without its CRLF. RFC 3501 §2.2: lines end in CRLF (bare LF tolerated)."""
        try:
            line = await self.conn.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise CloseSession from None
        except asyncio.LimitOverrunError:
            self.untagged("BYE [TOOBIG] Command line too long")
            raise CloseSession from None
        if len(line) > MAX_LINE + 2:
            self.untagged("BYE [TOOBIG] Command line too long")
            raise CloseSession
        return line[:-2] if line.endswith(b"\r\n") else line[:-1]

    async def read_command(self) -> bytes | None:
        """A whole command with its literals in place, or None when the command was
        refused during framing (the reply is queued)."""
        self._idle_since = asyncio.get_running_loop().time()
        self._waiting = True
        try:
            first = await self._first_line()
        except TimeoutError:
            # RFC 3501 §5.4 autologout (raised into the read by _check_idle)
            self.untagged("BYE Autologout; idle for too long")
            raise CloseSession from None
        finally:
            self._waiting = False
        words = first.split(b" ", 3)
        # only a logged-in APPEND may carry a message-sized literal: before login every
        # command is held to the small limit, so nobody can upload 50 MB unauthenticated
        is_append = len(words) > 1 and words[1].upper() == b"APPEND" and self.user is not None
        limit = self.rt.max_message_size if is_append else MAX_COMMAND_LITERALS
        parts = [first]
        total = len(first)
        line = first
        literal_bytes = 0
        literals = 0
        while (lit := literal_suffix(line)) is not None:
            size, sync = lit
            literal_bytes += size
            # messages announced so far, for the quota: a MULTIAPPEND literal is one, a
            # CATENATE (RFC 4469) is one however many TEXT literals it joins
            if _CAT_TEXT.search(line) is None:
                literals += 1
            literals += line.upper().count(b"CATENATE (")
            if is_append:
                # RFC 3502 §6.3.11: each message of a MULTIAPPEND is checked on its own
                # announcement, before its continuation; nothing has been stored yet
                too_big = size > limit or literal_bytes > limit * MULTIAPPEND_TOTAL
            else:
                too_big = literal_bytes > limit
            if too_big or total > MAX_LINE * 4:
                tag = tag_of(first)
                if not sync:
                    # RFC 7888 §4: a non-synchronizing literal we will not read ends the session
                    self.untagged("BYE [TOOBIG] Literal too large")
                    raise CloseSession
                # refused before the continuation: the client never sends the octets
                text = "[TOOBIG] Message too large" if is_append else "Literal too large"
                status = "NO" if is_append else "BAD"
                self.send(
                    responses.tagged(tag, status, text)
                    if tag
                    else responses.untagged(f"BAD {text}")
                )
                return None
            if sync and is_append and await over_quota(self, literal_bytes, max(1, literals)):
                # refused before the continuation (RFC 9208 §4.3): nothing is uploaded
                tag = tag_of(first)
                self.send(responses.tagged(tag or "*", "NO", "[OVERQUOTA] Quota exceeded"))
                return None
            if sync:
                self.send(b"+ Ready for literal data\r\n")
                await self.flush()
            try:
                async with asyncio.timeout(self.autologout):
                    data = await self.conn.reader.readexactly(size)
                    line = await self.read_line()
            except TimeoutError:
                self.untagged("BYE Autologout; idle for too long")
                raise CloseSession from None
            except asyncio.IncompleteReadError:
                raise CloseSession from None
            parts += (b"\r\n", data, line)
            total += len(line)
        return b"".join(parts) if len(parts) > 1 else first

    async def _first_line(self) -> bytes:
        """The first line of the next command. Under NOTIFY (RFC 5465 §3: the server
        sends notifications at any time, not only before a tagged reply) the changes the
        client asked for are sent while it is waiting."""
        if self.notify is None or self.account is None:
            return await self.read_line()
        acct = self.account
        read = asyncio.ensure_future(self.read_line())
        try:
            while (watch := self.notify) is not None:
                change = asyncio.ensure_future(acct.wait_for_change(watch.position(self)))
                try:
                    done, _ = await asyncio.wait(
                        {read, change}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    change.cancel()
                    with contextlib.suppress(BaseException):
                        await change
                if read in done:
                    break
                try:
                    await watch.deliver(
                        self,
                        selected=watch.pushes_selected and self.state is State.SELECTED,
                        expunge_ok=not watch.delayed,
                    )
                except MailstoreError as exc:
                    log.warning("notify failed", error=type(exc).__name__)
                await self.flush()
            return await read
        finally:
            if not read.done():
                read.cancel()
                with contextlib.suppress(BaseException):
                    await read

    async def continuation(self, prompt: bytes = b"") -> bytes:
        """Send ``+ prompt`` and read the client's line (AUTHENTICATE, RFC 3501 §7.5)."""
        self.send(b"+ " + prompt + b"\r\n")
        await self.flush()
        try:
            async with asyncio.timeout(self.autologout):
                return await self.read_line()
        except TimeoutError:
            self.untagged("BYE Autologout; idle for too long")
            raise CloseSession from None

    def _check_idle(self) -> None:
        """RFC 3501 §5.4: end a wait for the next command that has lasted
        :attr:`autologout` seconds, by making the pending read raise TimeoutError.

        One timer per session, re-armed for the rest of the current wait when it fires
        early, instead of an ``asyncio.timeout`` around every wait: arming and cancelling
        a timer per command was a measurable part of a command's CPU (issue 20)."""
        loop = asyncio.get_running_loop()
        left = self.autologout
        if self._waiting:
            left = self._idle_since + self.autologout - loop.time()
            if left <= 0:
                self._idle_timer = None
                self.conn.reader.set_exception(TimeoutError())
                return
        self._idle_timer = loop.call_later(left, self._check_idle)

    # --- main loop ------------------------------------------------------------------------
    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch_stop())
        self._idle_timer = asyncio.get_running_loop().call_later(self.autologout, self._check_idle)
        try:
            caps = " ".join(self.capabilities())
            self.untagged(f"OK [CAPABILITY {caps}] Postern IMAP ready")
            await self.flush()
            while not self.logged_out:
                data = await self.read_command()
                if data is not None:
                    await self.execute(data)
                if self.stopping and not self.logged_out:
                    self.untagged("BYE Server shutting down")
                    break
                await self.flush()
        except CloseSession:
            pass
        finally:
            watcher.cancel()
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), 5)
            await self.cleanup()

    async def _watch_stop(self) -> None:
        await self.conn.stopping.wait()
        self.stopping = True
        if self._waiting:
            with contextlib.suppress(Exception):
                self.conn.write(responses.untagged("BYE Server shutting down"))
            self.conn.close()

    async def cleanup(self) -> None:
        if self.user is not None:
            self.rt.limiter.close_user(self.user.address)
            self.user = None

    async def execute(self, data: bytes) -> None:
        try:
            req = parse(data, utf8=self.utf8)
        except BadCharset as exc:
            # RFC 3501 §6.4.4
            self.send(
                responses.tagged(
                    exc.tag or "*", "NO", "[BADCHARSET (US-ASCII UTF-8)] Unknown charset"
                )
            )
            return
        except ParseError as exc:
            await self._bad(exc.tag, exc.message, unknown=isinstance(exc, UnknownCommand))
            return
        spec = self.dispatch.get(req.name)
        if spec is None:
            await self._bad(req.tag, f"{req.name} not supported", unknown=True)
            return
        if self.state not in spec.states:
            await self._bad(req.tag, f"{req.name} not allowed now")
            return
        # None: no account before the command (LOGIN, AUTHENTICATE): nothing it wrote
        before = self.account.change_seq if self.account is not None else None
        try:
            result = await spec.run(self, req)
            if result is None:
                return
            status, text = "OK", result
            await self._mirror_sync(before)
        except errors.Refused as exc:
            status, text = exc.reply()
        except MailstoreError as exc:
            status, text = errors.engine_reply(exc)
        except (CloseSession, ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("command failed", command=req.name)
            status, text = errors.INTERNAL
        _count(req.name, status)
        if status == "BAD":
            self.bad_commands += 1
        elif self.user is not None:
            self.bad_commands = 0  # after login only consecutive bad commands count
        try:
            if self.notify is not None and self.account is not None:
                # RFC 5465: the owed notifications, the selected mailbox's as always
                await self.notify.deliver(
                    self,
                    selected=spec.updates != "none" and self.state is State.SELECTED,
                    expunge_ok=spec.updates == "all",
                )
            elif (
                self.selected is not None
                and spec.updates != "none"
                and self.state is State.SELECTED
            ):
                await self.selected.sync(self, expunge_ok=spec.updates == "all")
        except MailstoreError as exc:
            # the command itself is done: its reply stands; the updates that could
            # not be read now are sent after a later command (the view is unchanged)
            log.warning("mailbox updates failed", error=type(exc).__name__)
        self.send(responses.tagged(req.tag, status, text))
        await self._check_bad_limit()

    async def _mirror_sync(self, before: int | None) -> None:
        """Synchronous mirroring: a write is answered OK once the peer committed it
        (or the wait timed out: services/store/mirror_sync.py). A login is no write: the
        account's records it finds were the peer's business before it (waiting on them,
        a process that started since would wait for a note that never comes again)."""
        sync, acct = self.rt.mirror_sync, self.account
        if sync is None or acct is None or before is None:
            return
        if acct.change_seq > before:
            try:
                await sync.wait(acct, after=before)
            except MailstoreError:  # the write is committed here: its OK stands
                log.warning("synchronous mirror wait failed", account=acct.id)

    async def _bad(self, tag: str | None, message: str, *, unknown: bool = False) -> None:
        self.bad_commands += 1
        _count("unknown" if unknown else "invalid", "BAD")
        self.send(
            responses.tagged(tag, "BAD", message) if tag else responses.untagged(f"BAD {message}")
        )
        await self._check_bad_limit()

    async def _check_bad_limit(self) -> None:
        limit = self.rt.max_bad_commands if self.user is None else self.rt.max_bad_after_login
        if self.bad_commands >= limit:
            self.untagged("BYE Too many invalid commands")
            raise CloseSession
