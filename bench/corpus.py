"""The benchmark's messages: deterministic, varied, exactly ``size`` bytes each.

Both sides get byte-identical copies, so ENVELOPE, SEARCH and body fetches do the same
work on each. Senders, subjects and dates vary (SEARCH FROM/SUBJECT/SINCE select a few
percent of a mailbox); every fourth message is multipart/alternative.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

DOMAIN = "bench.test"
SENDERS = 50  # SEARCH FROM "sender7@" matches 1/50 of a mailbox
SUBJECT_WORDS = [
    "invoice",
    "report",
    "meeting",
    "release",
    "quarterly",
    "budget",
    "holiday",
    "review",
    "offer",
    "update",
    "security",
    "newsletter",
    "reminder",
    "shipment",
    "contract",
    "agenda",
    "travel",
    "feedback",
    "survey",
    "welcome",
]
BODY_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "postern",
    "delivers",
    "mail",
    "to",
    "every",
    "mailbox",
    "on",
    "the",
    "store",
    "and",
    "dovecot",
    "serves",
    "imap",
    "to",
    "many",
    "clients",
    "with",
    "care",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
]
BASE_DATE = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)


def sender(i: int) -> str:
    return f"sender{i % SENDERS}@example.org"


def subject_word(i: int) -> str:
    return SUBJECT_WORDS[i % len(SUBJECT_WORDS)]


def date_of(i: int) -> datetime:
    """Message ``i`` was written ``i`` minutes after BASE_DATE."""
    return BASE_DATE + timedelta(minutes=i)


def imap_date(d: datetime) -> str:
    """RFC 3501 date-time for APPEND: ``"05-Jan-2026 08:00:00 +0000"``."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return f"{d.day:02d}-{months[d.month - 1]}-{d.year} {d:%H:%M:%S} +0000"


def _filler(rng: random.Random, nbytes: int) -> bytes:
    """Text lines (≤ 76 characters, CRLF) of exactly ``nbytes`` bytes."""
    out = bytearray()
    while len(out) < nbytes:
        room = nbytes - len(out)
        if room <= 2:
            out += b"\r\n"[:room] if room == 2 else b"x"
            continue
        words: list[str] = []
        length = 0
        while length < 60:
            w = rng.choice(BODY_WORDS)
            words.append(w)
            length += len(w) + 1
        line = " ".join(words)[: min(76, room - 2)].encode()
        out += line + b"\r\n"
    return bytes(out[:nbytes])


def message(i: int, size: int = 10 * 1024, *, to: str = f"user@{DOMAIN}") -> bytes:
    """Message number ``i`` (0-based), exactly ``size`` bytes (at least the headers)."""
    rng = random.Random(i)
    frm = sender(i)
    headers = [
        f"From: Sender {i % SENDERS} <{frm}>",
        f"To: <{to}>",
        f"Subject: {subject_word(i)} #{i} {' '.join(rng.choice(BODY_WORDS) for _ in range(4))}",
        f"Date: {format_datetime(date_of(i))}",
        f"Message-ID: <bench.{i}@example.org>",
        "MIME-Version: 1.0",
    ]
    if i % 4 == 3:
        boundary = f"=_bench_{i}"
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        head = ("\r\n".join(headers) + "\r\n\r\n").encode()
        part1 = f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n".encode()
        part2 = f"\r\n--{boundary}\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n".encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        room = max(0, size - len(head) - len(part1) - len(part2) - len(tail))
        text = _filler(rng, room // 2)
        html_room = room - len(text)
        html = b"<p>" + _filler(rng, max(0, html_room - 7)) + b"</p>"
        html = html[:html_room] if html_room >= 7 else b"x" * html_room
        return head + part1 + text + part2 + html + tail
    headers.append("Content-Type: text/plain; charset=us-ascii")
    head = ("\r\n".join(headers) + "\r\n\r\n").encode()
    return head + _filler(rng, max(0, size - len(head)))


def dot_stuff(data: bytes) -> bytes:
    """SMTP/LMTP/POP3 transparency (RFC 5321 §4.5.2): a leading '.' is doubled."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


SMALL_MIN = 1024
SMALL_MAX = 50 * 1024


def mixed_size(i: int, lo: int = SMALL_MIN, hi: int = SMALL_MAX) -> int:
    """The size of message ``i`` of a mailbox of mixed sizes (W4b): log-uniform between
    ``lo`` and ``hi`` bytes, so most messages are small and a few are large (median about
    7 KiB, mean about 12.5 KiB for 1–50 KiB), the same on every call."""
    u = random.Random(f"size-{i}").random()
    return int(lo * (hi / lo) ** u)
