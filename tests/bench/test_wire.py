"""The load generators' protocol clients, fed canned server bytes (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.loadgen.wire import (
    Imap,
    Pop3,
    ProtocolError,
    Smtp,
    exists_count,
    literal_length,
    quote,
    status_messages,
)


class Writer:
    def __init__(self) -> None:
        self.sent = bytearray()

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        return None

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None


def reader(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


def client(cls: Any, data: bytes, *extra: Any) -> tuple[Any, Writer]:
    w = Writer()
    return cls(reader(data), w, *extra), w


def test_parsers() -> None:
    assert literal_length(b"* 1 FETCH (BODY[] {10240}\r\n") == 10240
    assert literal_length(b"* 1 FETCH (BODY[] {12+}\r\n") == 12
    assert literal_length(b"* 1 FETCH (FLAGS ())\r\n") is None
    assert exists_count(b"* 10000 EXISTS\r\n") == 10000
    assert exists_count(b"* 3 RECENT\r\n") is None
    assert status_messages(b'* STATUS "INBOX" (MESSAGES 231)\r\n') == 231
    assert quote('a"b\\c') == b'"a\\"b\\\\c"'


async def test_imap_skips_literals_and_finds_the_tagged_reply() -> None:
    body = b"a) 1\r\n* 2 EXPUNGE\r\nfake a1 OK inside literal\r\n"
    data = (
        b"* 1 FETCH (UID 7 BODY[] {%d}\r\n" % len(body) + body + b")\r\n"
        b"* 5 EXISTS\r\n"
        b"a1 OK FETCH done\r\n"
    )
    imap, w = client(Imap, data)
    seen: list[bytes] = []
    imap.on_untagged = seen.append
    status, untagged = await imap.command(b"UID FETCH 7 BODY.PEEK[]")
    assert w.sent == b"a1 UID FETCH 7 BODY.PEEK[]\r\n"
    assert status == b"OK FETCH done\r\n"
    assert len(untagged) == 2 and untagged[1] == b"* 5 EXISTS\r\n"
    assert imap.bytes_in == len(data)
    assert seen == untagged


async def test_imap_no_raises_and_literal_plus_is_used_when_offered() -> None:
    imap, w = client(Imap, b"a1 NO [OVERQUOTA] full\r\n")
    imap.capabilities = {b"IMAP4REV1", b"LITERAL+"}
    with pytest.raises(ProtocolError):
        await imap.command(b"APPEND INBOX", b"hello")
    assert w.sent == b"a1 APPEND INBOX {5+}\r\nhello\r\n"


async def test_imap_synchronising_literal_waits_for_continuation() -> None:
    imap, w = client(Imap, b"+ go ahead\r\na1 OK [APPENDUID 1 9] done\r\n")
    await imap.command(b"APPEND INBOX", b"hello")
    assert w.sent == b"a1 APPEND INBOX {5}\r\nhello\r\n"


async def test_imap_select_returns_exists() -> None:
    imap, _ = client(Imap, b"* FLAGS ()\r\n* 42 EXISTS\r\na1 OK [READ-WRITE] ok\r\n")
    assert await imap.select() == 42


async def test_pop3_multiline_handles_terminator_across_reads_and_empty_data() -> None:
    data = b"+OK\r\n.\r\n+OK 12 octets\r\nline\r\n..dot\r\n.\r\n+OK bye\r\n"
    pop, _ = client(Pop3, data)
    assert await pop.multiline(b"UIDL") == b""
    assert await pop.multiline(b"RETR 1") == b"line\r\n..dot\r\n"
    assert await pop.command(b"QUIT") == b"+OK bye\r\n"


async def test_pop3_err_raises() -> None:
    pop, _ = client(Pop3, b"-ERR [IN-USE] locked\r\n")
    with pytest.raises(ProtocolError):
        await pop.command(b"PASS x")


async def test_lmtp_reads_one_reply_per_recipient_and_dot_stuffs() -> None:
    replies = b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 a ok\r\n250 2.0.0 b ok\r\n"
    smtp, w = client(Smtp, replies, True)
    await smtp.send("s@x.test", ["a@b.test", "b@b.test"], b".hidden\r\nx")
    assert w.sent.endswith(b"DATA\r\n..hidden\r\nx\r\n.\r\n")


async def test_smtp_multiline_reply_and_refusal() -> None:
    smtp, _ = client(Smtp, b"250-first\r\n250 last\r\n550 5.1.1 unknown\r\n", False)
    code, text = await smtp.reply()
    assert code == 250 and text == b"250-first\r\n250 last\r\n"
    with pytest.raises(ProtocolError):
        await smtp.send_line(b"RCPT TO:<x@y>", expect=250)
