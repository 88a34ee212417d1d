"""The malformed-MIME corpus: each message goes in over SMTP and must come out over IMAP
(ENVELOPE and BODYSTRUCTURE answered OK), the store still serving afterwards."""

from __future__ import annotations

import asyncio
import imaplib
import time
from collections.abc import Callable

from reliability.ledger import HEADER
from reliability.load import new_rid, send_once
from reliability.report import Probe


def _head(rid: str, extra: str = "", ctype: str = "text/plain") -> str:
    return (
        f"From: <m@remote.example>\r\nSubject: mime {rid}\r\n{HEADER}: {rid}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n{extra}"
    )


def deep_nesting(rid: str, depth: int = 1000) -> bytes:
    parts = [_head(rid, ctype='multipart/mixed; boundary="b0"') + "\r\n"]
    for i in range(1, depth):
        parts.append(f'--b{i - 1}\r\nContent-Type: multipart/mixed; boundary="b{i}"\r\n\r\n')
    parts.append(f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\ndeep\r\n")
    for i in reversed(range(depth)):
        parts.append(f"--b{i}--\r\n")
    return "".join(parts).encode()


def many_parts(rid: str, n: int = 10_000) -> bytes:
    body = [_head(rid, ctype='multipart/mixed; boundary="p"') + "\r\n"]
    body += [f"--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(n)]
    body.append("--p--\r\n")
    return "".join(body).encode()


def huge_header(rid: str) -> bytes:
    folded = "X-Huge: " + "\r\n ".join("h" * 70 for _ in range(3000)) + "\r\n"
    return (_head(rid, folded) + "\r\nbody\r\n").encode()


def broken_base64(rid: str) -> bytes:
    return (
        _head(rid, "Content-Transfer-Encoding: base64\r\n") + "\r\n%%%%not*base64===\r\nQUJD\r\n="
        "\r\n"
    ).encode()


def no_separator(rid: str) -> bytes:
    return (_head(rid) + "this line has no colon and there is no blank line\r\nbody?\r\n").encode()


def nul_bytes(rid: str) -> bytes:
    return _head(rid).encode() + b"\r\nbody with \0 NUL \0 bytes\r\n"


def non_utf8_headers(rid: str) -> bytes:
    return _head(rid).encode() + b"X-Latin1: caf\xe9 \xff\xfe\r\nSubject2: \x80\x81\r\n\r\nbody\r\n"


CORPUS: list[tuple[str, Callable[[str], bytes]]] = [
    ("1,000 nested multiparts", deep_nesting),
    ("10,000 parts", many_parts),
    ("210 KB folded header", huge_header),
    ("broken base64", broken_base64),
    ("no header/body separator", no_separator),
    ("NUL bytes in the body", nul_bytes),
    ("non-UTF-8 header bytes", non_utf8_headers),
]


def _fetch(port: int, user: str, password: str, rid: str, timeout: float = 30.0) -> str:
    with imaplib.IMAP4("127.0.0.1", port, timeout=timeout) as imap:
        imap.login(user, password)
        for _ in range(60):
            for box in ("INBOX", "Junk"):
                typ, _ = imap.select(box, readonly=True)
                if typ != "OK":
                    continue
                typ, data = imap.uid("SEARCH", "HEADER", HEADER, rid)
                uids = data[0].split() if typ == "OK" and data and data[0] else []
                if uids:
                    typ, _got = imap.uid("FETCH", uids[0].decode(), "(ENVELOPE BODYSTRUCTURE)")
                    return f"FETCH {typ}"
            time.sleep(0.5)
        return "not delivered in 30 s"


async def mime_corpus(smtp: int, imap: int, user: str, password: str) -> list[Probe]:
    out = []
    for label, make in CORPUS:
        rid = new_rid("mime")
        msg = make(rid)
        _step, code, text = await send_once("127.0.0.1", smtp, "m@remote.example", [user], msg)
        if code == 250:
            try:
                fetched = await asyncio.to_thread(_fetch, imap, user, password, rid)
            except Exception as exc:
                fetched = f"IMAP error: {type(exc).__name__}: {str(exc)[:60]}"
        else:
            fetched = "-"
        got = f"{code} {text.split(chr(10))[-1][4:40] if text else ''}; IMAP: {fetched}"
        ok = (code == 250 and fetched == "FETCH OK") or (code is not None and 500 <= code < 600)
        out.append(
            Probe("MIME", label, "250 and FETCH ENVELOPE BODYSTRUCTURE OK (or a 5xx)", got, ok)
        )
    return out
