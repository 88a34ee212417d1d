"""Helpers for the write-timeout tests (imap/ and pop3/test_write_timeout.py): a client
that stops reading in the middle of a large response.

The client is a plain socket with a tiny receive buffer that never reads after sending
its command; the message is far larger than every buffer on the way, so the server's
write can only end by the timeout (the idle timeouts are left at their long defaults).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

BIG = 12 * 1024 * 1024
HOST = "127.0.0.1"


def big_message() -> bytes:
    line = b"x" * 78 + b"\r\n"
    return b"Subject: big\r\nFrom: a@example.org\r\n\r\n" + line * (BIG // len(line))


def stalled_client(port: int, lines: list[bytes]) -> socket.socket:
    """Connect with a tiny receive window, send ``lines`` one by one (reading each reply
    line), then stop reading."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(60)
    s.connect((HOST, port))
    f = s.makefile("rb")
    f.readline()  # greeting
    for line in lines[:-1]:
        s.sendall(line + b"\r\n")
        tag = line.split(b" ", 1)[0] + b" "
        reply = f.readline()
        while reply.startswith(b"* "):  # IMAP untagged lines before the tagged reply
            reply = f.readline()
        assert reply.startswith((b"+OK", tag + b"OK")), reply
    s.sendall(lines[-1] + b"\r\n")  # the big response starts; nobody reads it
    return s


async def until(cond: Callable[[], bool], what: str) -> None:
    """Poll ``cond`` (a hang guard of two minutes, not a timing assertion)."""
    for _ in range(12_000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")
