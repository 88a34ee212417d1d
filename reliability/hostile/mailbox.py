"""Hostile IMAP and POP3: STARTTLS/STLS injection, huge literals, deep parentheses, 1,000
idle connections, hostile mailbox and user names."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from pathlib import Path

from reliability.hostile.wire import Wire
from reliability.report import Probe


def _tagged(lines: list[str], tag: str) -> str:
    return next((ln for ln in lines if ln.startswith(tag + " ")), lines[-1] if lines else "")


def _status(line: str) -> str:
    parts = line.split(" ", 2)
    return parts[1] if len(parts) > 1 else line


async def _imap(port: int) -> Wire:
    w = await Wire.connect(port)
    await w.line()
    return w


async def _imap_login(port: int, user: str, password: str) -> Wire:
    w = await _imap(port)
    await w.send(f'l LOGIN "{user}" "{password}"\r\n'.encode())
    lines = await w.until_tagged("l")
    assert _status(_tagged(lines, "l")) == "OK", lines
    return w


async def imap_starttls_injection(port: int) -> Probe:
    w = await _imap(port)
    try:
        await w.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
        ok_line = _tagged(await w.until_tagged("a"), "a")
        if _status(ok_line) != "OK":
            return Probe("IMAP", "STARTTLS + pipelined CAPABILITY", "OK then TLS", ok_line, False)
        await w.start_tls()
        await w.send(b"c NOOP\r\n")
        lines = await w.until_tagged("c")
    finally:
        w.close()
    leaked = [ln for ln in lines if ln.startswith("b ")]
    return Probe(
        "IMAP", "a STARTTLS\\r\\nb CAPABILITY in one packet",
        "b discarded: after TLS only c's answer", " / ".join(lines)[:80], not leaked,
    )  # fmt: skip


async def pop3_stls_injection(port: int) -> Probe:
    w = await Wire.connect(port)
    try:
        await w.line()
        await w.send(b"STLS\r\nUSER injected\r\n")
        first = await w.line()
        if not first.startswith("+OK"):
            return Probe("POP3", "STLS + pipelined USER", "+OK then TLS", first, False)
        await w.start_tls()
        await w.send(b"PASS whatever\r\n")
        got = await w.line()
    finally:
        w.close()
    # Had USER survived, PASS would be checked (-ERR bad password); discarded: -ERR no USER.
    return Probe(
        "POP3", "STLS\\r\\nUSER injected in one packet",
        "USER discarded: PASS after TLS refused as out of order", got,
        got.startswith("-ERR") and "pass" not in got.lower().replace("password", ""),
    )  # fmt: skip


async def imap_limits(port: int, user: str, password: str) -> list[Probe]:
    out = []
    for literal in (b"{999999999}", b"{999999999+}", b"{18446744073709551616}"):
        w = await _imap(port)
        try:
            await w.send(b"a LOGIN " + literal + b"\r\n")
            got = await w.line()
        finally:
            w.close()
        ok = not got.startswith("+") and (" BAD" in got or " NO" in got or "BYE" in got)
        out.append(
            Probe("IMAP", f"LOGIN with literal {literal.decode()}",
                  "BAD/NO at once, no continuation, nothing allocated", got[:80], ok)
        )  # fmt: skip
    w = await _imap_login(port, user, password)
    try:
        await w.send(b"s SELECT INBOX\r\n")
        await w.until_tagged("s")
        await w.send(b"d SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000 + b"\r\n")
        got = _tagged(await w.until_tagged("d", 30), "d")
        await w.send(b"n NOOP\r\n")
        after = _tagged(await w.until_tagged("n"), "n")
    finally:
        w.close()
    out.append(
        Probe("IMAP", "SEARCH with 1,000 nested parentheses",
              "BAD (or an answer), session alive", f"{got[:50]} / NOOP: {after[:20]}",
              _status(got) in ("BAD", "NO", "OK") and _status(after) == "OK")
    )  # fmt: skip
    out.append(await idle_connections(port, user, password))
    return out


async def idle_connections(port: int, user: str, password: str, n: int = 1000) -> Probe:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    wires: list[Wire] = []
    greeted = refused = 0
    try:
        for _ in range(n):
            try:
                wires.append(await Wire.connect(port))
            except OSError:
                refused += 1
        greetings = await asyncio.gather(*(w.line(15) for w in wires))
        greeted = sum(1 for g in greetings if g.startswith("* OK"))
        try:
            fresh = await _imap_login(port, user, password)
            fresh.close()
            works = True
        except (AssertionError, OSError):
            works = False
        if not works:  # per-IP limits hold the slots; the server must come back after
            for w in wires:
                w.close()
            wires.clear()
            await asyncio.sleep(1)
            try:
                fresh = await _imap_login(port, user, password)
                fresh.close()
                works = True
            except (AssertionError, OSError):
                works = False
    finally:
        for w in wires:
            w.close()
    got = (
        f"{greeted} greeted, {n - greeted - refused} refused/BYE, {refused} not accepted; "
        f"login after: {'OK' if works else 'FAILED'}"
    )
    return Probe(
        "IMAP", f"{n} idle connections from one IP",
        "per-IP cap (BYE), server still serves a new login", got, works,
    )  # fmt: skip


HOSTILE_NAMES: list[tuple[str, bytes]] = [
    ("..", b'".."'),
    ("../../../reliability-escape", b'"../../../reliability-escape"'),
    ("a/b", b'"a/b"'),
    ("%", b'"%"'),
    ("*", b'"*"'),
    ("NUL inside", b"{3}\r\na\0b"),
    ("1,000 characters", b'"' + b"x" * 1000 + b'"'),
]


async def imap_hostile_names(port: int, user: str, password: str, root: Path) -> list[Probe]:
    out = []
    w = await _imap_login(port, user, password)
    try:
        for label, raw in HOSTILE_NAMES:
            if raw.startswith(b"{"):
                head, _, rest = raw.partition(b"\r\n")
                await w.send(b"c CREATE " + head + b"\r\n")
                cont = await w.line()
                if not cont.startswith("+"):
                    got = cont
                else:
                    await w.send(rest + b"\r\n")
                    got = _tagged(await w.until_tagged("c"), "c")
            else:
                await w.send(b"c CREATE " + raw + b"\r\n")
                got = _tagged(await w.until_tagged("c"), "c")
            escaped = any(
                p.name == "reliability-escape" for p in root.parent.rglob("*reliability-escape*")
            )
            out.append(
                Probe("IMAP names", f"CREATE {label}",
                      "OK as data or NO/BAD; no file outside the store",
                      got[:70] + (" (ESCAPED to a path!)" if escaped else ""),
                      _status(got) in ("OK", "NO", "BAD") and not escaped)
            )  # fmt: skip
        await w.send(b'l LIST "" *\r\n')
        lines = await w.until_tagged("l")
        out.append(
            Probe("IMAP names", "LIST after the hostile CREATEs", "OK", _tagged(lines, "l")[:40],
                  _status(_tagged(lines, "l")) == "OK")
        )  # fmt: skip
    finally:
        w.close()
    for label, raw in [
        ("../../etc/passwd", b'"../../etc/passwd"'),
        ("%", b'"%"'),
        ("*@rel.test", b'"*@rel.test"'),
        ("1,000 characters", b'"' + b"u" * 1000 + b'"'),
    ]:
        w = await Wire.connect(port, local=f"127.0.3.{len(out)}")  # own IP: own throttle
        await w.line()
        try:
            await w.send(b"u LOGIN " + raw + b' "password"\r\n')
            got = _tagged(await w.until_tagged("u", 40), "u")
        finally:
            w.close()
        out.append(
            Probe(
                "IMAP names", f"LOGIN as {label}", "NO/BAD", got[:60], _status(got) in ("NO", "BAD")
            )
        )
    return out


async def pop3_hostile_names(port: int) -> list[Probe]:
    out = []
    for label, name in [
        ("../../etc/passwd", "../../etc/passwd"),
        ("%", "%"),
        ("1,000 characters", "u" * 1000),
    ]:
        w = await Wire.connect(port)
        try:
            await w.line()
            await w.send(f"USER {name}\r\n".encode())
            u = await w.line()
            await w.send(b"PASS password\r\n")
            got = await w.line(15)
        finally:
            w.close()
        out.append(
            Probe(
                "POP3 names",
                f"USER {label} / PASS",
                "-ERR",
                f"{u[:20]} / {got[:40]}",
                got.startswith("-ERR") or u.startswith("-ERR"),
            )
        )
    return out
