"""Filling mailboxes before a workload: the same corpus messages on both sides.

Dovecot gets them over LMTP, Postern through its delivery path (published to
MAIL_INBOUND as the filter publishes, consumed by the store), or by IMAP APPEND when the
delivery consumer is not there yet. Either way the mailbox holds byte-identical messages
(each server adds its own trace headers on delivery).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
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


def maildir_write(
    maildir: Path,
    rcpt: str,
    count: int,
    size: Size,
    *,
    start: int = 0,
    owner: tuple[int, int] | None = None,
) -> int:
    """Write corpus messages ``start..start+count`` straight into ``maildir/new`` as
    Dovecot's LMTP leaves them (its three trace fields first, LF line ends, a file name
    with the ``S=`` file size and ``W=`` CRLF size), for mailboxes too large to fill over
    LMTP in reasonable time (W9: 100,000 messages; Dovecot finds them on its next sync,
    as mail another delivery agent left). ``owner``: uid and gid for the directories and
    files (None: the caller's). Returns the bytes written."""
    new = maildir / "new"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        if owner is not None:
            os.chown(maildir / sub, *owner)
    if owner is not None:
        os.chown(maildir, *owner)
    host = socket.gethostname().split(".")[0] or "localhost"
    now = time.time()
    when = format_datetime(datetime.fromtimestamp(int(now), UTC))
    pid = os.getpid()
    total = 0
    for i in range(start, start + count):
        body = message(i, size_at(size, i), to=rcpt)
        trace = (
            f"Return-Path: <sender@example.org>\r\nDelivered-To: {rcpt}\r\n"
            f"Received: from bench.client ([127.0.0.1])\r\n\tby {host} with LMTP\r\n"
            f"\tid bench{i}\r\n\t(envelope-from <sender@example.org>)\r\n"
            f"\tfor <{rcpt}>; {when}\r\n"
        ).encode()
        crlf = trace + body
        data = crlf.replace(b"\r\n", b"\n")
        name = f"{int(now)}.M{i}P{pid}.{host},S={len(data)},W={len(crlf)}"
        fd = os.open(new / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        total += len(data)
    return total


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
