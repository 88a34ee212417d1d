"""The load generator: SMTP senders that record every attempt in the ledger and, like a
real MTA, retry a message that got a 4xx or no answer (RFC 5321 §4.5.4.1)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reliability.ledger import HEADER, Entry, Ledger, Outcome, outcome_for

_counter = itertools.count()


def new_rid(prefix: str = "r") -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{os.urandom(4).hex()}"


def make_message(rid: str, sender: str, rcpts: Sequence[str], size: int = 600) -> bytes:
    body = os.urandom(max(16, size // 2)).hex()
    lines = [body[i : i + 76] for i in range(0, len(body), 76)]
    head = (
        f"From: <{sender}>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
        f"Subject: reliability {rid}\r\nMessage-ID: <{rid}@reliability.test>\r\n"
        f"{HEADER}: {rid}\r\n\r\n"
    )
    return head.encode() + "\r\n".join(lines).encode() + b"\r\n"


class SmtpBroke(Exception):
    """The connection closed or timed out before a reply."""


class SmtpClient:
    """A minimal SMTP client that never hides a reply: every code is the server's own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> SmtpClient:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise SmtpBroke(f"connect: {type(exc).__name__}") from None
        return cls(r, w)

    async def reply(self, timeout: float) -> tuple[int, str]:
        lines = []
        try:
            while True:
                line = await asyncio.wait_for(self.reader.readline(), timeout)
                if not line:
                    raise SmtpBroke("closed")
                lines.append(line.decode("latin-1").rstrip("\r\n"))
                if len(line) < 4 or line[3:4] != b"-":
                    break
        except (OSError, TimeoutError) as exc:
            raise SmtpBroke(type(exc).__name__) from None
        try:
            return int(lines[-1][:3]), "\n".join(lines)
        except ValueError:
            raise SmtpBroke(f"garbage reply {lines[-1][:60]!r}") from None

    async def send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            raise SmtpBroke(type(exc).__name__) from None

    async def command(self, line: str, timeout: float) -> tuple[int, str]:
        await self.send(line.encode() + b"\r\n")
        return await self.reply(timeout)

    def close(self) -> None:
        self.writer.close()


async def send_once(
    host: str,
    port: int,
    sender: str,
    rcpts: Sequence[str],
    message: bytes,
    timeout: float = 60.0,
    auth: tuple[str, str] | None = None,
) -> tuple[str, int | None, str]:
    """One SMTP transaction: ``(step, code, text)`` of the last reply (or of the break)."""
    step = "CONNECT"
    try:
        c = await SmtpClient.connect(host, port, timeout)
    except SmtpBroke as exc:
        return step, None, str(exc)
    try:
        code, text = await c.reply(timeout)
        if code != 220:
            return step, code, text
        step = "EHLO"
        code, text = await c.command("EHLO load.reliability.test", timeout)
        if code != 250:
            return step, code, text
        if auth is not None:  # submission (RFC 4954 §4, RFC 4616 PLAIN)
            step = "AUTH"
            plain = base64.b64encode(f"\0{auth[0]}\0{auth[1]}".encode()).decode()
            code, text = await c.command(f"AUTH PLAIN {plain}", timeout)
            if code != 235:
                return step, code, text
        step = "MAIL"
        code, text = await c.command(f"MAIL FROM:<{sender}>", timeout)
        if code != 250:
            return step, code, text
        step = "RCPT"
        for r in rcpts:
            code, text = await c.command(f"RCPT TO:<{r}>", timeout)
            if code != 250:
                return step, code, text
        step = "DATA"
        code, text = await c.command("DATA", timeout)
        if code != 354:
            return step, code, text
        step = "END"
        await c.send(message.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, text = await c.reply(timeout)
        try:
            await c.command("QUIT", 2)
        except SmtpBroke:
            pass
        return step, code, text
    except SmtpBroke as exc:
        return step, None, str(exc)
    finally:
        c.close()


@dataclass
class Load:
    """``senders`` concurrent senders, each sending new messages until stopped; a message
    that got 4xx or no answer is retried after ``retry_delay`` while the load runs."""

    host: str
    port: int
    ledger: Ledger
    recipients: Sequence[str]
    sender: str = "load@remote.example"
    senders: int = 4
    retry_delay: float = 1.0
    max_attempts: int = 5
    rate: float = 0.0  # per sender per second; 0 = as fast as answered
    valid: bool = True
    message_factory: Callable[[str, str, Sequence[str]], bytes] = make_message
    auth: tuple[str, str] | None = None  # (user, password): AUTH PLAIN before MAIL

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.pending = 0

    async def _one(self, rng: random.Random) -> None:
        rcpts = (rng.choice(self.recipients),)
        rid = new_rid()
        message = self.message_factory(rid, self.sender, rcpts)
        for _ in range(self.max_attempts):
            step, code, text = await send_once(
                self.host, self.port, self.sender, rcpts, message, auth=self.auth
            )
            outcome = outcome_for(step, code)
            self.ledger.record(Entry(rid, rcpts, outcome, code, step, text[:200], valid=self.valid))
            if outcome is Outcome.ACKED or (code is not None and code >= 500):
                return
            if self._stop.is_set():
                return
            await asyncio.sleep(self.retry_delay)

    async def _sender(self, n: int) -> None:
        rng = random.Random(n)
        while not self._stop.is_set():
            started = time.monotonic()
            await self._one(rng)
            if self.rate:
                await asyncio.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._sender(n)) for n in range(self.senders)]

    async def stop(self) -> None:
        """Stop starting new messages; messages being retried finish their last attempt."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []
