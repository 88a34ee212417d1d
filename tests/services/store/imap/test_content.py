"""Message content over a real socket: binary APPEND kept exactly (RFC 3516), quoted-
printable decoding for BINARY and body search (RFC 2045 §6.7), and the trailing comment of
an address without a phrase as its display name (ENVELOPE, SEARCH FROM/TO/CC/BCC)."""

from __future__ import annotations

import re

import pytest

from tests.services.store.imap.conftest import ImapHarness, Line

_LITERAL = re.compile(rb"(~?)\{(\d+)\}\r\n$")


async def _reply(c: Line, tag: bytes) -> list[bytes]:
    """Lines up to the tagged one; a literal's octets are joined to their line (with its
    ``{n}`` or ``~{n}`` marker kept), so binary content with LF and NUL reads whole."""
    out: list[bytes] = []
    while True:
        ln = await c.line()
        assert ln, out
        while m := _LITERAL.search(ln):
            data = await c.reader.readexactly(int(m.group(2)))
            ln = ln + data + await c.line()
        out.append(ln)
        if ln.startswith(tag + b" "):
            return out


PAYLOAD = b"a\nb\x00c\nd"  # 7 octets: bare LFs and a NUL
BINARY_MSG = (
    b"From: a@example.com\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\n" + PAYLOAD + b"\r\n--XX--\r\n"
)


@pytest.mark.parametrize("sync", [True, False])
async def test_binary_append_fetch_binary_and_body(imap: ImapHarness, sync: bool) -> None:
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        plus = b"" if sync else b"+"
        await c.send(b"a APPEND INBOX ~{%d%s}\r\n" % (len(BINARY_MSG), plus))
        if sync:
            assert (await c.line()).startswith(b"+ ")
        await c.send(BINARY_MSG + b"\r\n")
        reply = await _reply(c, b"a")
        assert reply[-1].startswith(b"a OK [APPENDUID "), reply
        await c.send(b"f FETCH 1 (BINARY.SIZE[1] RFC822.SIZE)\r\n")
        reply = await _reply(c, b"f")
        assert reply[0] == b"* 1 FETCH (BINARY.SIZE[1] 7 RFC822.SIZE %d)\r\n" % len(BINARY_MSG)
        await c.send(b"g FETCH 1 BINARY.PEEK[1]\r\n")
        reply = await _reply(c, b"g")
        assert reply[0] == b"* 1 FETCH (BINARY[1] ~{7}\r\n" + PAYLOAD + b")\r\n"
        # RFC 3501 literals may not carry NUL: BODY[1] of the part comes as literal8
        await c.send(b"h FETCH 1 BODY.PEEK[1]\r\n")
        reply = await _reply(c, b"h")
        assert reply[0] == b"* 1 FETCH (BODY[1] ~{7}\r\n" + PAYLOAD + b")\r\n"
        await c.send(b"i FETCH 1 BODY.PEEK[]\r\n")
        reply = await _reply(c, b"i")
        assert reply[0] == b"* 1 FETCH (BODY[] ~{%d}\r\n" % len(BINARY_MSG) + BINARY_MSG + b")\r\n"
    finally:
        await c.close()


async def test_plain_append_still_normalises_line_ends(imap: ImapHarness) -> None:
    msg = b"Subject: lf\nFrom: a@example.com\n\nbody\n"
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        await c.send(b"a APPEND INBOX {%d}\r\n" % len(msg))
        assert (await c.line()).startswith(b"+ ")
        await c.send(msg + b"\r\n")
        assert (await _reply(c, b"a"))[-1].startswith(b"a OK")
        await c.send(b"f FETCH 1 RFC822.SIZE\r\n")
        reply = await _reply(c, b"f")
        assert reply[0] == b"* 1 FETCH (RFC822.SIZE %d)\r\n" % (len(msg) + msg.count(b"\n"))
    finally:
        await c.close()


QP_MSG = (
    b"From: a@example.com\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"trailing   \r\nsoft=  \r\nbreak=3D\r\n"
)
QP_DECODED = b"trailing\r\nsoftbreak=\r\n"


async def test_quoted_printable_binary_and_search(imap: ImapHarness) -> None:
    await imap.deliver(QP_MSG)
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        await c.send(b"f FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])\r\n")
        reply = await _reply(c, b"f")
        assert reply[0] == (
            b"* 1 FETCH (BINARY.SIZE[1] %d BINARY[1] {%d}\r\n%s)\r\n"
            % (len(QP_DECODED), len(QP_DECODED), QP_DECODED)
        )
        reply = await c.cmd(b"g SEARCH BODY softbreak")
        assert reply[0] == b"* SEARCH 1\r\n"
        reply = await c.cmd(b'h SEARCH BODY "trailing soft"')
        assert reply[0] == b"* SEARCH\r\n"
    finally:
        await c.close()


COMMENT_MSG = (
    b"From: user@example.com (Real Name)\r\n"
    b"To: to@example.com (To Person)\r\n"
    b"Cc: cc@example.com (Copy Person), Named <n@example.com> (not a name)\r\n"
    b"Bcc: bcc@example.com (Blind Person)\r\n"
    b"Subject: comments\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\n\r\nbody\r\n"
)


async def test_trailing_comment_is_the_display_name(imap: ImapHarness) -> None:
    await imap.deliver(COMMENT_MSG)
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        reply = await c.cmd(b"f FETCH 1 ENVELOPE")
        env = reply[0]
        assert b'(("Real Name" NIL "user" "example.com"))' in env, env
        assert b'(("To Person" NIL "to" "example.com"))' in env, env
        assert b'(("Copy Person" NIL "cc" "example.com")("Named" NIL "n" "example.com"))' in env
        assert b'(("Blind Person" NIL "bcc" "example.com"))' in env, env
        for key in (
            b'FROM "Real Name"',
            b"FROM eal",
            b'TO "to person"',
            b'CC "Copy Pers"',
            b'BCC "blind person"',
        ):
            reply = await c.cmd(b"g SEARCH " + key)
            assert reply[0] == b"* SEARCH 1\r\n", (key, reply)
        reply = await c.cmd(b'h SEARCH CC "not a name"')
        assert reply[0] == b"* SEARCH\r\n"
    finally:
        await c.close()
