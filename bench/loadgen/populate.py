"""Filling mailboxes before a workload: the same corpus messages on both sides.

Dovecot gets them over LMTP, Postern through its delivery path (published to
MAIL_INBOUND as the filter publishes, consumed by the store), or by IMAP APPEND when the
delivery consumer is not there yet. Either way the mailbox holds byte-identical messages
(each server adds its own trace headers on delivery).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TypeAlias

from bench.corpus import date_of, imap_date, message
from bench.loadgen.wire import Imap, Pop3, ProtocolError, Smtp

HOST = "127.0.0.1"

Size: TypeAlias = int | Callable[[int], int]
"""Every message's size in bytes, or a function of the message's number (mixed sizes)."""


def size_at(size: Size, i: int) -> int:
    return size if isinstance(size, int) else size(i)


def corpus(count: int, size: Size, to: str, start: int = 0) -> Iterator[bytes]:
    for i in range(start, start + count):
        yield message(i, size_at(size, i), to=to)


async def lmtp_deliver(
    port: int, rcpt: str, count: int, size: Size, *, concurrency: int = 8, start: int = 0
) -> None:
    """Deliver corpus messages ``start..start+count`` to ``rcpt`` over LMTP."""
    todo = iter(range(start, start + count))

    async def worker() -> None:
        conn = await Smtp.connect(HOST, port, lmtp=True)
        try:
            for i in todo:
                await conn.send("sender@example.org", [rcpt], message(i, size_at(size, i), to=rcpt))
        finally:
            await conn.quit()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def imap_append(
    port: int, user: str, password: str, count: int, size: Size, *, concurrency: int = 4
) -> None:
    """APPEND corpus messages to INBOX with their own dates as INTERNALDATE."""
    todo = iter(range(count))

    async def worker() -> None:
        conn = await Imap.connect(HOST, port)
        try:
            await conn.login(user, password)
            for i in todo:
                date = imap_date(date_of(i)).encode()
                body = message(i, size_at(size, i), to=user)
                await conn.command(b'APPEND INBOX () "%s"' % date, body)
        finally:
            await conn.logout()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def imap_count(port: int, user: str, password: str) -> int:
    conn = await Imap.connect(HOST, port)
    try:
        await conn.login(user, password)
        return await conn.status_messages("INBOX")
    finally:
        await conn.logout()


async def pop3_count(port: int, user: str, password: str) -> int:
    conn = await Pop3.connect(HOST, port)
    try:
        await conn.login(user, password)
        return int((await conn.command(b"STAT")).split()[1])
    finally:
        await conn.quit()


async def wait_for_count(
    count: Callable[[], object], want: int, *, timeout: float, interval: float = 0.25
) -> int:
    """Poll ``count()`` (an awaitable factory) until it reaches ``want``; return the last."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        try:
            last = await count()  # type: ignore[misc]
        except (ProtocolError, OSError):
            last = -1
        if last >= want or time.monotonic() > deadline:
            return last
        await asyncio.sleep(interval)
