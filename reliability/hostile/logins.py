"""Login brute force on every protocol: after a run of wrong passwords from one IP the
failures must slow down (delays grow per account and per IP), and the right password from
another IP must still work (an attacker cannot lock the owner out)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

from reliability.hostile.wire import Wire
from reliability.report import Probe

ATTEMPTS = 12
ATTACKER = "127.0.0.1"
OWNER = "127.0.0.2"

Try = Callable[[str, str, str], Awaitable[bool]]  # (source ip, user, password) -> accepted


def _smtp(port: int) -> Try:
    async def attempt(src: str, user: str, password: str) -> bool:
        w = await Wire.connect(port, local=src)
        try:
            await w.smtp_reply()
            await w.send(b"EHLO brute.example\r\n")
            await w.smtp_reply()
            token = base64.b64encode(f"\0{user}\0{password}".encode())
            await w.send(b"AUTH PLAIN " + token + b"\r\n")
            return (await w.smtp_reply(30)).startswith("235")
        finally:
            w.close()

    return attempt


def _imap(port: int) -> Try:
    async def attempt(src: str, user: str, password: str) -> bool:
        w = await Wire.connect(port, local=src)
        try:
            await w.line()
            await w.send(f'a LOGIN "{user}" "{password}"\r\n'.encode())
            lines = await w.until_tagged("a", 30)
            return any(ln.startswith("a OK") for ln in lines)
        finally:
            w.close()

    return attempt


def _pop3(port: int) -> Try:
    async def attempt(src: str, user: str, password: str) -> bool:
        w = await Wire.connect(port, local=src)
        try:
            await w.line()
            await w.send(f"USER {user}\r\n".encode())
            await w.line()
            await w.send(f"PASS {password}\r\n".encode())
            return (await w.line(30)).startswith("+OK")
        finally:
            w.close()

    return attempt


async def brute_force(proto: str, attempt: Try, user: str, password: str) -> Probe:
    took: list[float] = []
    accepted_wrong = False
    for i in range(ATTEMPTS):
        started = time.monotonic()
        try:
            accepted_wrong |= await attempt(ATTACKER, user, f"wrong-{i}")
        except (OSError, TimeoutError):
            pass  # a refused connection is a fine answer to a brute force
        took.append(time.monotonic() - started)
    try:
        owner_ok = await attempt(OWNER, user, password)
    except (OSError, TimeoutError) as exc:
        owner_ok = False
        owner_err = type(exc).__name__
    else:
        owner_err = ""
    grows = took[-1] > took[0] * 1.5 and took[-1] > took[0] + 0.5
    got = (
        f"failure {1} took {took[0]:.1f}s, failure {ATTEMPTS} took {took[-1]:.1f}s; "
        f"right password from {OWNER}: {'OK' if owner_ok else 'refused ' + owner_err}"
    )
    return Probe(
        proto,
        f"{ATTEMPTS} wrong passwords for one account from {ATTACKER}",
        "delays grow; the right password from another IP still works",
        got,
        grows and owner_ok and not accepted_wrong,
    )


async def all_protocols(
    submission: int, imap: int, pop3: int, user: str, password: str
) -> list[Probe]:
    return list(
        await asyncio.gather(
            brute_force("SMTP AUTH brute force", _smtp(submission), user, password),
            brute_force("IMAP brute force", _imap(imap), user, password),
            brute_force("POP3 brute force", _pop3(pop3), user, password),
        )
    )
