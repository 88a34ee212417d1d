"""Minimal asyncio clients for the load generators: IMAP, POP3, SMTP/LMTP, spamd.

They do only what a load generator needs, cheaply: send a command, skip literals, find
the tagged (or final) reply. Parsing of untagged data is limited to what the harness
uses (EXISTS counts, APPENDUID), so the client costs far less CPU than the servers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from bench.corpus import dot_stuff

STREAM_LIMIT = 64 * 1024 * 1024
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS\r\n$")


class ProtocolError(Exception):
    """The server said something the load generator did not expect."""


def literal_length(line: bytes) -> int | None:
    """The size of the literal announced at the end of a response line (RFC 3501 §4.3)."""
    if not line.endswith(b"}\r\n"):
        return None
    m = _LITERAL.search(line)
    return int(m.group(1)) if m else None


def exists_count(line: bytes) -> int | None:
    """N of an untagged ``* N EXISTS`` line (RFC 3501 §7.3.1)."""
    m = _EXISTS.match(line)
    return int(m.group(1)) if m else None


def status_messages(line: bytes) -> int | None:
    """MESSAGES of an untagged ``* STATUS mailbox (MESSAGES n)`` line."""
    m = re.search(rb"MESSAGES (\d+)", line)
    return int(m.group(1)) if m and line.startswith(b"* STATUS") else None


def quote(s: str) -> bytes:
    """An IMAP quoted string (RFC 3501 §4.3)."""
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


class Imap:
    """One IMAP connection. ``on_untagged`` sees every untagged line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._n = 0
        self.capabilities: set[bytes] = set()
        self.on_untagged: Callable[[bytes], None] | None = None
        self.bytes_in = 0

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 30.0) -> Imap:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=STREAM_LIMIT), timeout
        )
        conn = cls(r, w)
        greeting = await asyncio.wait_for(r.readline(), timeout)
        if not greeting.startswith(b"* OK"):
            w.close()
            raise ProtocolError(f"IMAP greeting: {greeting[:200]!r}")
        conn._caps_from(greeting)
        return conn

    def _caps_from(self, line: bytes) -> None:
        m = re.search(rb"\[CAPABILITY ([^\]]*)\]", line)
        if m:
            self.capabilities = set(m.group(1).upper().split())
        elif line.startswith(b"* CAPABILITY "):
            self.capabilities = set(line[13:].strip().upper().split())

    def _tag(self) -> bytes:
        self._n += 1
        return b"a%d" % self._n

    async def _read_response(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        """Read to the tagged line; return it and the untagged lines (literals skipped)."""
        untagged: list[bytes] = []
        prefix = tag + b" "
        reader = self.reader
        while True:
            line = await reader.readline()
            if not line:
                raise ProtocolError("connection closed by the server")
            self.bytes_in += len(line)
            n = literal_length(line)
            while n is not None:
                await reader.readexactly(n)
                self.bytes_in += n
                more = await reader.readline()
                self.bytes_in += len(more)
                line = line + more
                n = literal_length(more)
            if line.startswith(prefix):
                return line[len(prefix) :], untagged
            if line.startswith(b"* "):
                untagged.append(line)
                self._caps_from(line)
                if self.on_untagged is not None:
                    self.on_untagged(line)

    async def command(self, cmd: bytes, literal: bytes | None = None) -> tuple[bytes, list[bytes]]:
        """Send ``tag cmd`` (with a literal after it, if given) and return (status line
        after the tag, untagged lines). A NO or BAD raises :class:`ProtocolError`."""
        tag = self._tag()
        if literal is None:
            self.writer.write(tag + b" " + cmd + b"\r\n")
        elif b"LITERAL+" in self.capabilities:
            self.writer.write(b"%s %s {%d+}\r\n" % (tag, cmd, len(literal)) + literal + b"\r\n")
        else:
            self.writer.write(b"%s %s {%d}\r\n" % (tag, cmd, len(literal)))
            await self.writer.drain()
            while True:  # RFC 3501 §7.5: wait for the continuation request
                line = await self.reader.readline()
                if line.startswith(b"+"):
                    break
                if line.startswith(tag + b" ") or not line:
                    raise ProtocolError(f"{cmd[:40]!r} refused: {line[:200]!r}")
            self.writer.write(literal + b"\r\n")
        await self.writer.drain()
        status, untagged = await self._read_response(tag)
        if not status.startswith(b"OK"):
            raise ProtocolError(f"{cmd[:60]!r}: {status[:200]!r}")
        return status, untagged

    async def login(self, user: str, password: str) -> None:
        await self.command(b"LOGIN " + quote(user) + b" " + quote(password))
        if not self.capabilities or b"IMAP4REV1" not in self.capabilities:
            await self.command(b"CAPABILITY")

    async def select(self, mailbox: str = "INBOX") -> int:
        _, untagged = await self.command(b"SELECT " + quote(mailbox))
        for line in untagged:
            n = exists_count(line)
            if n is not None:
                return n
        raise ProtocolError("SELECT without EXISTS")

    async def status_messages(self, mailbox: str = "INBOX") -> int:
        _, untagged = await self.command(b"STATUS " + quote(mailbox) + b" (MESSAGES)")
        for line in untagged:
            n = status_messages(line)
            if n is not None:
                return n
        raise ProtocolError("STATUS without MESSAGES")

    async def idle_start(self) -> bytes:
        """Enter IDLE (RFC 2177); untagged lines then go to ``on_untagged``."""
        tag = self._tag()
        self.writer.write(tag + b" IDLE\r\n")
        await self.writer.drain()
        while True:
            line = await self.reader.readline()
            if not line:
                raise ProtocolError("connection closed entering IDLE")
            if line.startswith(b"+"):
                return tag
            if line.startswith(tag + b" "):
                raise ProtocolError(f"IDLE refused: {line[:200]!r}")
            if self.on_untagged is not None:
                self.on_untagged(line)

    async def idle_read(self) -> None:
        """Read IDLE's untagged lines forever (cancel to stop)."""
        while True:
            line = await self.reader.readline()
            if not line:
                raise ProtocolError("connection closed during IDLE")
            if self.on_untagged is not None:
                self.on_untagged(line)

    async def idle_done(self, tag: bytes) -> None:
        self.writer.write(b"DONE\r\n")
        await self.writer.drain()
        await self._read_response(tag)

    async def logout(self) -> None:
        try:
            await asyncio.wait_for(self.command(b"LOGOUT"), 10)
        except (ProtocolError, OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        self.close()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class Pop3:
    """One POP3 connection (RFC 1939), lock-step, with its own read buffer (a multi-line
    answer ends at the first CRLF.CRLF, which may span reads)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 30.0) -> Pop3:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=STREAM_LIMIT), timeout
        )
        conn = cls(r, w)
        greeting = await asyncio.wait_for(conn.readline(), timeout)
        if not greeting.startswith(b"+OK"):
            w.close()
            raise ProtocolError(f"POP3 greeting: {greeting[:200]!r}")
        return conn

    async def _fill(self) -> None:
        chunk = await self.reader.read(256 * 1024)
        if not chunk:
            raise ProtocolError("connection closed by the server")
        self.buf += chunk

    async def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[: i + 2])
                del self.buf[: i + 2]
                return line
            await self._fill()

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        reply = await self.readline()
        if not reply.startswith(b"+OK"):
            raise ProtocolError(f"{line.split(b' ')[0]!r}: {reply[:200]!r}")
        return reply

    async def multiline(self, line: bytes) -> bytes:
        """A command with a multi-line answer (RFC 1939 §3); returns the data lines,
        still dot-stuffed, each ending in CRLF."""
        await self.command(line)
        # The data is empty (".\r\n" at once) or ends with CRLF "." CRLF.
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return b""
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                data = bytes(self.buf[: i + 2])
                del self.buf[: i + 5]
                return data
            start = max(0, len(self.buf) - 4)
            await self._fill()

    async def login(self, user: str, password: str) -> None:
        await self.command(b"USER " + user.encode())
        await self.command(b"PASS " + password.encode())

    async def quit(self) -> None:
        try:
            await asyncio.wait_for(self.command(b"QUIT"), 30)
        finally:
            self.writer.close()


class Smtp:
    """One SMTP or LMTP connection (RFC 5321, RFC 2033), without pipelining."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lmtp: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.lmtp = lmtp

    @classmethod
    async def connect(
        cls, host: str, port: int, *, lmtp: bool = False, timeout: float = 30.0
    ) -> Smtp:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=STREAM_LIMIT), timeout
        )
        conn = cls(r, w, lmtp)
        code, text = await asyncio.wait_for(conn.reply(), timeout)
        if code != 220:
            w.close()
            raise ProtocolError(f"greeting {code} {text!r}")
        code, text = await conn.send_line(
            b"%s bench.client" % (b"LHLO" if lmtp else b"EHLO"), expect=250
        )
        return conn

    async def reply(self) -> tuple[int, bytes]:
        lines = []
        while True:
            line = await self.reader.readline()
            if len(line) < 4:
                raise ProtocolError(f"short reply {line!r}")
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    async def send_line(self, line: bytes, expect: int | None = None) -> tuple[int, bytes]:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        code, text = await self.reply()
        if expect is not None and code != expect:
            raise ProtocolError(f"{line[:40]!r}: {text[:200]!r}")
        return code, text

    async def send(self, mail_from: str, rcpts: list[str], data: bytes) -> None:
        """One transaction; raises :class:`ProtocolError` unless every recipient got it."""
        await self.send_line(b"MAIL FROM:<%s>" % mail_from.encode(), expect=250)
        for r in rcpts:
            await self.send_line(b"RCPT TO:<%s>" % r.encode(), expect=250)
        await self.send_line(b"DATA", expect=354)
        body = dot_stuff(data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.writer.write(body + b".\r\n")
        await self.writer.drain()
        for _ in rcpts if self.lmtp else [None]:  # RFC 2033 §4.2: one reply per recipient
            code, text = await self.reply()
            if code != 250:
                raise ProtocolError(f"DATA: {text[:200]!r}")

    async def quit(self) -> None:
        try:
            await asyncio.wait_for(self.send_line(b"QUIT"), 10)
        except (ProtocolError, OSError, TimeoutError):
            pass
        self.writer.close()


async def spamd_check(host: str, port: int, message: bytes, user: str = "bench") -> bytes:
    """One SPAMC/1.5 CHECK request; returns spamd's answer (spamd closes after it)."""
    r, w = await asyncio.open_connection(host, port)
    try:
        w.write(
            b"CHECK SPAMC/1.5\r\nContent-length: %d\r\nUser: %s\r\n\r\n"
            % (len(message), user.encode())
            + message
        )
        await w.drain()
        answer = await r.read()
    finally:
        w.close()
    if not answer.startswith(b"SPAMD/") or b" 0 EX_OK" not in answer.split(b"\r\n", 1)[0]:
        raise ProtocolError(f"spamd: {answer[:200]!r}")
    return answer
