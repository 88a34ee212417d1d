"""PREVIEW (RFC 8970) over a real socket: the text part's first 200 characters, decoded,
white space collapsed; HTML without its tags; attachments and non-text skipped; the
LAZY modifier; a non-ASCII preview as a literal in IMAP4rev1."""

from __future__ import annotations

import re

import pytest

from tests.services.store.imap.conftest import ImapHarness, message

HEAD = b"From: a@example.com\r\nSubject: p\r\nMIME-Version: 1.0\r\n"


def _multipart(*parts: bytes) -> bytes:
    body = b"".join(b"--B\r\n" + p + b"\r\n" for p in parts)
    return HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + body + b"--B--\r\n"


MESSAGES = {
    "plain": message(1),
    "html": _multipart(
        b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
        b"<html><style>p {color: red}</style><p>Hello&nbsp;<b>world</b> &amp; co</p></html>"
    ),
    "attachment": _multipart(
        b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnot this",
        b"Content-Type: text/plain\r\n\r\nbut   this\r\n\r\none",
    ),
    "image": _multipart(
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo="
    ),
    "long": HEAD + b"\r\n" + b"word " * 100,
}


async def _preview(imap: ImapHarness, data: bytes, item: bytes = b"PREVIEW") -> bytes:
    await imap.deliver(data)
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        await c.send(b"f FETCH 1 (" + item + b")\r\n")
        line = await c.line()
        if m := re.search(rb"\{(\d+)\}\r\n$", line):
            line += await c.reader.readexactly(int(m.group(1))) + await c.line()
        assert (await c.line()).startswith(b"f OK")
        return line
    finally:
        await c.close()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("plain", b'"Body of message 1. Second line."'),
        ("html", b'"Hello world & co"'),
        ("attachment", b'"but this one"'),
        ("image", b'""'),
        ("long", b'"' + b" ".join([b"word"] * 40) + b'"'),
    ],
)
async def test_preview_text(imap: ImapHarness, kind: str, expected: bytes) -> None:
    got = await _preview(imap, MESSAGES[kind])
    assert got == b"* 1 FETCH (PREVIEW " + expected + b")\r\n"


async def test_preview_is_at_most_200_characters(imap: ImapHarness) -> None:
    got = await _preview(imap, HEAD + b"\r\n" + b"x" * 500)
    assert got == b'* 1 FETCH (PREVIEW "' + b"x" * 200 + b'")\r\n'


async def test_lazy_modifier_and_other_items(imap: ImapHarness) -> None:
    got = await _preview(imap, message(1), b"UID PREVIEW (LAZY) FLAGS")
    assert got == (
        b'* 1 FETCH (UID 1 PREVIEW "Body of message 1. Second line." FLAGS (\\Recent))\r\n'
    )


async def test_utf8_preview_is_a_literal_in_imap4rev1(imap: ImapHarness) -> None:
    data = (
        HEAD + b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln=\r\n!\r\n"
    )
    text = "Grüße aus Köln!".encode()
    got = await _preview(imap, data)
    assert got == b"* 1 FETCH (PREVIEW {%d}\r\n%s)\r\n" % (len(text), text)


async def test_unknown_modifier_is_bad(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        reply = await c.cmd(b"f FETCH 1 (PREVIEW (EAGER))")
        assert reply[-1].startswith(b"f BAD"), reply
        reply = await c.cmd(b"g CAPABILITY")
        assert b" PREVIEW" in reply[0]
    finally:
        await c.close()
