"""NUL octets stored in a message never go raw inside an IMAP literal (RFC 3501 §4.3: CHAR8
excludes NUL): BODY[] sends them as 0x80 at the same offsets; BINARY[] sends the octets as
they are in a literal8 (RFC 3516 §4.4)."""

from __future__ import annotations

from tests.services.store.imap.conftest import Factory

WITH_NUL = b"From: a@example.net\r\nSubject: nul\r\n\r\nbefore\x00after\r\n\x00\x00end\r\n"


async def test_body_literal_carries_no_nul(make_imap: Factory) -> None:
    h = await make_imap()
    await h.deliver(WITH_NUL)
    a = await h.raw_login()
    await a.cmd(b"s SELECT INBOX")
    await a.send(b"f FETCH 1 (BODY.PEEK[] RFC822.SIZE)\r\n")
    head = await a.line()
    assert head.endswith(b"{%d}\r\n" % len(WITH_NUL)), head
    data = await a.reader.readexactly(len(WITH_NUL))
    assert b"\x00" not in data
    assert data == WITH_NUL.replace(b"\x00", b"\x80")
    assert (await a.until_tagged(b"f"))[-1].startswith(b"f OK")
    await a.send(b"b FETCH 1 (BINARY.PEEK[])\r\n")
    head = await a.line()
    assert head.endswith(b"~{%d}\r\n" % len(WITH_NUL)), head  # literal8
    assert await a.reader.readexactly(len(WITH_NUL)) == WITH_NUL
    assert (await a.until_tagged(b"b"))[-1].startswith(b"b OK")
    await a.close()
