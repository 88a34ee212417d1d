"""Hostile SMTP: smuggling endings, bare CR/LF, overlong lines, 1,000 RCPTs, STARTTLS
command injection, AUTH abuse and the open-relay matrix."""

from __future__ import annotations

import base64
from collections.abc import Callable

from reliability.hostile.wire import Wire
from reliability.report import Probe

SMUGGLED = (
    b"MAIL FROM:<ceo@evil.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
)


def code(line: str) -> int:
    try:
        return int(line[:3])
    except ValueError:
        return 0


async def _open(port: int, rcpt: str | None = None) -> Wire:
    w = await Wire.connect(port)
    await w.smtp_reply()
    await w.send(b"EHLO hostile.example\r\n")
    await w.smtp_reply()
    if rcpt is not None:
        await w.send(b"MAIL FROM:<h@remote.example>\r\n")
        await w.smtp_reply()
        await w.send(f"RCPT TO:<{rcpt}>\r\n".encode())
        await w.smtp_reply()
    return w


async def smuggling(port: int, rcpt: str) -> list[Probe]:
    out = []
    for ending in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n"):
        w = await _open(port, rcpt)
        try:
            await w.send(b"DATA\r\n")
            await w.smtp_reply()
            smuggled = SMUGGLED.replace(b"{rcpt}", rcpt.encode())
            await w.send(b"Subject: first\r\n\r\nhello" + ending + smuggled + b"\r\n.\r\n")
            first = await w.smtp_reply()
            extra = await w.quiet(1.0)
        finally:
            w.close()
        ok = code(first) >= 500 and not extra.strip()
        out.append(
            Probe(
                "SMTP",
                f"DATA body with {ending!r} then a smuggled MAIL/RCPT/DATA",
                "one 5xx (bare line ending), no reply to smuggled commands",
                first + (f" + {extra.strip()[:60]!r}" if extra.strip() else ""),
                ok,
            )
        )
    return out


async def bare_line_endings(port: int) -> list[Probe]:
    out = []
    for raw in (b"NOOP\n", b"NOOP\r", b"NOOP\rMAIL FROM:<x@y.example>\r\n"):
        w = await _open(port)
        try:
            await w.send(raw)
            got = await w.smtp_reply(5)
        finally:
            w.close()
        ok = code(got) >= 500 or (got == "<timeout>" and raw.endswith(b"\r"))
        out.append(
            Probe(
                "SMTP", f"command ending {raw!r}", "5xx syntax (or no reply to a lone CR)", got, ok
            )
        )
    return out


async def overlong(port: int, rcpt: str) -> list[Probe]:
    out = []
    w = await _open(port)
    try:
        await w.send(b"NOOP " + b"A" * 5000 + b"\r\n")
        got = await w.smtp_reply()
        await w.send(b"NOOP\r\n")
        after = await w.smtp_reply()
    finally:
        w.close()
    out.append(
        Probe("SMTP", "5,000-byte command line", "500 line too long, session in step",
              f"{got} / then NOOP: {after}", code(got) == 500 and code(after) == 250)
    )  # fmt: skip
    w = await _open(port, rcpt)
    try:
        await w.send(b"DATA\r\n")
        await w.smtp_reply()
        await w.send(b"Subject: long\r\n\r\n" + b"B" * 200_000 + b"\r\n.\r\n")
        got = await w.smtp_reply(30)
    finally:
        w.close()
    out.append(
        Probe("SMTP", "200,000-byte body line (RFC 5321 §4.5.3.1.6: 1,000)",
              "5xx line too long (or accepted whole), never 4xx or a hang", got,
              code(got) >= 500 or code(got) == 250)
    )  # fmt: skip
    return out


async def many_rcpts(port: int, rcpt: str) -> list[Probe]:
    w = await _open(port)
    codes: list[int] = []
    try:
        await w.send(b"MAIL FROM:<h@remote.example>\r\n")
        await w.smtp_reply()
        await w.send(f"RCPT TO:<{rcpt}>\r\n".encode() * 1000)
        for _ in range(1000):
            codes.append(code(await w.smtp_reply(20)))
    finally:
        w.close()
    ok_n = codes.count(250)
    over = sorted(set(codes[ok_n:]))
    got = f"{ok_n}×250 then {over}"
    ok = 0 < ok_n <= 1000 and all(c == 452 for c in codes[ok_n:])
    return [
        Probe("SMTP", "1,000 RCPT TO pipelined", "250 up to the limit, then 452 4.5.3", got, ok)
    ]


async def starttls_injection(port: int) -> list[Probe]:
    w = await _open(port)
    try:
        await w.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
        ready = await w.smtp_reply()
        if code(ready) != 220:
            return [Probe("SMTP", "STARTTLS + pipelined MAIL", "220 then TLS", ready, False)]
        await w.start_tls()
        await w.send(b"EHLO after.example\r\n")
        first = await w.smtp_reply()
        await w.send(b"RCPT TO:<x@rel.test>\r\n")
        rcpt = await w.smtp_reply()
    finally:
        w.close()
    # Had MAIL been kept, the first reply after TLS would be its 250, and RCPT would pass.
    ok = code(first) == 250 and code(rcpt) == 503
    return [
        Probe("SMTP", "STARTTLS\\r\\nMAIL FROM:… in one packet",
              "injected MAIL discarded: EHLO 250, then RCPT 503 (no MAIL)",
              f"EHLO: {first[:40]}; RCPT: {rcpt[:50]}", ok)
    ]  # fmt: skip


async def auth_abuse(port: int, user: str) -> list[Probe]:
    cases: list[tuple[bytes, str, Callable[[int], bool]]] = [
        (b"AUTH PLAIN !!!notbase64!!!\r\n", "501 (bad base64)", lambda c: c == 501),
        (b"AUTH PLAIN " + b"A" * 20_000 + b"\r\n", "5xx (too long)", lambda c: 500 <= c < 600),
        (b"AUTH CRAM-NOPE\r\n", "504 unknown mechanism", lambda c: c == 504),
        (
            b"AUTH PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0wrong") + b"\r\n",
            "535 bad credentials",
            lambda c: c == 535,
        ),
        (
            b"AUTH PLAIN " + base64.b64encode(b"\0\0\0\0") + b"\r\n",
            "535 or 501, never 235",
            lambda c: c in (501, 535),
        ),
    ]
    out = []
    for raw, expected, good in cases:
        w = await _open(port)
        try:
            await w.send(raw)
            got = await w.smtp_reply(15)
        finally:
            w.close()
        shown = raw[:40].decode("latin-1").strip() + ("…" if len(raw) > 40 else "")
        out.append(Probe("SMTP AUTH", shown, expected, got, good(code(got))))
    w = await _open(port)
    try:
        await w.send(b"AUTH LOGIN\r\n")
        await w.smtp_reply()
        await w.send(b"*\r\n")
        got = await w.smtp_reply()
    finally:
        w.close()
    out.append(
        Probe("SMTP AUTH", "AUTH LOGIN then * (cancel)", "501 cancelled", got, code(got) == 501)
    )
    return out


async def relay_matrix(port: int, local: str) -> list[Probe]:
    domain = local.split("@", 1)[1]
    cases = [
        ("outsider@remote.example", "victim@other.example", "no relay: 5xx"),
        (local, "victim@other.example", "no relay (local sender, no AUTH): 5xx"),
        ("outsider@remote.example", f"victim%other.example@{domain}", "no percent hack: 5xx"),
        (
            "outsider@remote.example",
            f"@{domain}:victim@other.example",
            "no source route relay: 5xx",
        ),
        ("outsider@remote.example", f'"victim@other.example"@{domain}', "no quoted relay: 5xx"),
        ("outsider@remote.example", "victim@[127.0.0.1]", "no address literal relay: 5xx"),
        ("outsider@remote.example", f"victim@other.example.{domain}", "not ours: 5xx"),
    ]
    out = []
    for sender, rcpt, expected in cases:
        w = await _open(port)
        try:
            await w.send(f"MAIL FROM:<{sender}>\r\n".encode())
            await w.smtp_reply()
            await w.send(f"RCPT TO:<{rcpt}>\r\n".encode())
            got = await w.smtp_reply()
        finally:
            w.close()
        out.append(Probe("open relay", f"{sender} → {rcpt}", expected, got, 500 <= code(got) < 600))
    return out
