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

# (source ip, user, password) -> (accepted, the server's last line)
Try = Callable[[str, str, str], Awaitable[tuple[bool, str]]]


def _smtp(port: int) -> Try:
    async def attempt(src: str, user: str, password: str) -> tuple[bool, str]:
        w = await Wire.connect(port, local=src)
        try:
            await w.smtp_reply()
            await w.send(b"EHLO brute.example\r\n")
            await w.smtp_reply()
            token = base64.b64encode(f"\0{user}\0{password}".encode())
            await w.send(b"AUTH PLAIN " + token + b"\r\n")
            got = await w.smtp_reply(40)
            return got.startswith("235"), got
        finally:
            w.close()

    return attempt


def _imap(port: int) -> Try:
    async def attempt(src: str, user: str, password: str) -> tuple[bool, str]:
        w = await Wire.connect(port, local=src)
        try:
            await w.line()
            await w.send(f'a LOGIN "{user}" "{password}"\r\n'.encode())
            lines = await w.until_tagged("a", 40)
            return any(ln.startswith("a OK") for ln in lines), lines[-1]
        finally:
            w.close()

    return attempt


def _pop3(port: int) -> Try:
    async def attempt(src: str, user: str, password: str) -> tuple[bool, str]:
        w = await Wire.connect(port, local=src)
        try:
            await w.line()
            await w.send(f"USER {user}\r\n".encode())
            await w.line()
            await w.send(f"PASS {password}\r\n".encode())
            got = await w.line(40)
            return got.startswith("+OK"), got
        finally:
            w.close()

    return attempt


def _kind(line: str) -> str:
    """What sort of answer: the SMTP code, or the status and [RESPONSE-CODE] of IMAP and
    POP3 (``a NO [AUTHENTICATIONFAILED]`` vs ``a NO [UNAVAILABLE]``)."""
    head = line.split("]", 1)[0] if "[" in line else line
    return head[:40] if "[" in line else head[:3]


def _turned_away(line: str) -> bool:
    """The throttle's own refusal, told by its words where the protocol has no code of its
    own for it: POP3 answers both a wrong password and a throttled login ``-ERR [AUTH]``
    (RFC 3206 §4), only the text says "Too many failed logins"."""
    return "too many" in line.lower()


async def brute_force(
    proto: str, attempt: Try, user: str, password: str, attacker: str, owner: str
) -> Probe:
    took: list[float] = []
    answers: list[str] = []
    accepted_wrong = False
    for i in range(ATTEMPTS):
        started = time.monotonic()
        try:
            accepted, line = await attempt(attacker, user, f"wrong-{i}")
            accepted_wrong |= accepted
        except (OSError, TimeoutError) as exc:
            line = f"<{type(exc).__name__}>"  # a refused connection is a fine answer
        took.append(time.monotonic() - started)
        answers.append(line)
    try:
        owner_ok, owner_line = await attempt(owner, user, password)
    except (OSError, TimeoutError) as exc:
        owner_ok, owner_line = False, f"<{type(exc).__name__}>"
    grows = took[-1] > took[0] * 1.5 and took[-1] > took[0] + 0.5
    # Slowed down, or turned away without the password being tried (a different answer).
    stopped = (
        grows
        or _kind(answers[-1]) != _kind(answers[0])
        or (_turned_away(answers[-1]) and not _turned_away(answers[0]))
    )
    got = (
        f"1st failure {took[0]:.1f}s {answers[0][:30]!r}; slowest {max(took):.1f}s; "
        f"{ATTEMPTS}th {took[-1]:.1f}s "
        f"{answers[-1][:30]!r}; owner from {owner}: "
        f"{'OK' if owner_ok else 'refused ' + owner_line[:30]}"
    )
    return Probe(
        proto,
        f"{ATTEMPTS} wrong passwords for one account from {attacker}",
        "attacker slowed or turned away; the right password from another IP still works",
        got,
        stopped and owner_ok and not accepted_wrong,
    )


async def all_protocols(
    submission: int, imap: int, pop3: int, user: str, password: str
) -> list[Probe]:
    return list(
        await asyncio.gather(
            brute_force("SMTP AUTH", _smtp(submission), user, password, "127.0.1.1", "127.0.2.1"),
            brute_force("IMAP", _imap(imap), user, password, "127.0.1.2", "127.0.2.2"),
            brute_force("POP3", _pop3(pop3), user, password, "127.0.1.3", "127.0.2.3"),
        )
    )
