"""CATENATE (RFC 4469) with URL-PARTIAL (RFC 5550) over a real socket: the RFC's example
(a message re-assembled from parts of itself and another message, TEXT literals between),
relative and absolute IMAP URLs (RFC 5092), PARTIAL ranges, [BADURL url] for every kind
of URL that names nothing here, [TOOBIG], and CATENATE inside a MULTIAPPEND (all or
none)."""

from __future__ import annotations

import pytest

from tests.services.store.imap.conftest import Factory, ImapHarness, Line, message

HEADER = (
    b"From: Bob <bob@example.com>\r\nSubject: draft\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
)
PART1_MIME = b"Content-Type: text/plain\r\n\r\n"
PART1 = b"first part text"
DRAFT = HEADER + b"--B\r\n" + PART1_MIME + PART1 + b"\r\n--B--\r\n"


async def _setup(imap: ImapHarness) -> tuple[Line, bytes]:
    c = await imap.raw_login()
    assert (await c.cmd(b"c CREATE Work"))[-1].startswith(b"c OK")
    st = await c.cmd(b"s STATUS Work (UIDVALIDITY)")
    v = st[0].split(b"UIDVALIDITY ")[1].split(b")")[0]
    for i, data in enumerate((DRAFT, message(2))):
        await c.send(b"a%d APPEND Work {%d+}\r\n%s\r\n" % (i, len(data), data))
        assert (await c.until_tagged(b"a%d" % i))[-1].startswith(b"a%d OK" % i)
    return c, v


async def _catenate(c: Line, tag: bytes, parts: list[bytes | str]) -> list[bytes]:
    """APPEND Work CATENATE (...): str = URL, bytes = TEXT literal (synchronizing)."""
    line = tag + b" APPEND Work (\\Seen \\Draft) CATENATE ("
    for i, p in enumerate(parts):
        sep = b"" if i == 0 else b" "
        if isinstance(p, str):
            line += sep + b'URL "' + p.encode() + b'"'
            continue
        await c.send(line + sep + b"TEXT {%d}\r\n" % len(p))
        cont = await c.line()
        if not cont.startswith(b"+ "):
            return [cont]
        line = p
    await c.send(line + b")\r\n")
    return await c.until_tagged(tag)


async def _body(c: Line, uid: int) -> bytes:
    await c.cmd(b"e EXAMINE Work")
    got = b"".join(await c.cmd(b"f UID FETCH %d BODY.PEEK[]" % uid))
    head, _, rest = got.partition(b"}\r\n")
    n = int(head.rsplit(b"{", 1)[1])
    return rest[:n]


async def test_rfc4469_example(imap: ImapHarness) -> None:
    c, v = await _setup(imap)
    u = f"/Work;UIDVALIDITY={v.decode()}/;UID="
    reply = await _catenate(
        c,
        b"A003",
        [
            u + "1/;section=HEADER",
            b"--B\r\n",
            u + "1/;section=1.MIME",
            u + "1/;section=1",
            b"\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n",
            u + "2",
            b"\r\n--B--\r\n",
        ],
    )
    assert reply[-1].startswith(b"A003 OK [APPENDUID %s 3]" % v), reply
    expected = (
        HEADER
        + b"--B\r\n"
        + PART1_MIME
        + PART1
        + b"\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n"
        + message(2)
        + b"\r\n--B--\r\n"
    )
    assert await _body(c, 3) == expected
    flags = b"".join(await c.cmd(b"g UID FETCH 3 FLAGS"))
    assert b"\\Draft" in flags and b"\\Seen" in flags
    assert b" CATENATE" in (await c.cmd(b"k CAPABILITY"))[0]
    await c.close()


async def test_url_partial_and_absolute_urls(imap: ImapHarness) -> None:
    c, _ = await _setup(imap)
    reply = await _catenate(
        c,
        b"p",
        [
            b"Subject: partial\r\n\r\n",
            # RFC 5550 §5: octets 6..10 of part 1, then from octet 6 to its end
            "/Work/;UID=1/;SECTION=1/;PARTIAL=6.4",
            b"|",
            "imap://alice%40example.com@localhost/Work/;UID=1/;SECTION=1/;PARTIAL=6",
            b"|",
            "/Work/;UID=1/;SECTION=1/;PARTIAL=999",  # past the end: nothing
            b"|",
            "/Work/;UID=2/;SECTION=HEADER.FIELDS%20(SUBJECT)",
        ],
    )
    assert reply[-1].startswith(b"p OK [APPENDUID "), reply
    assert await _body(c, 3) == (
        b"Subject: partial\r\n\r\npart|part text||Subject: message 2\r\n\r\n"
    )
    await c.close()


@pytest.mark.parametrize(
    "url",
    [
        "/Work;UIDVALIDITY=1/;UID=1",  # another UIDVALIDITY
        "/Work/;UID=99",  # no such message
        "/Nowhere/;UID=1",  # no such mailbox
        "/Work/;UID=1/;SECTION=5",  # no such part
        "/Work/;UID=1/;SECTION=BOGUS",
        "Work/;UID=1",  # not an absolute path
        "/Work",  # no UID
        "imap://bob%40example.com@localhost/Work/;UID=1",  # another user's
        "http://example.com/x",
        "/Work/;UID=1/;PARTIAL=1.0",  # a length must be non-zero
    ],
)
async def test_badurl(imap: ImapHarness, url: str) -> None:
    c, _ = await _setup(imap)
    reply = await _catenate(c, b"b", [b"Subject: x\r\n\r\n", url])
    assert reply[-1] == b"b NO [BADURL " + url.encode() + b"] Unusable URL in CATENATE\r\n"
    st = await c.cmd(b"s STATUS Work (MESSAGES)")
    assert st[0] == b"* STATUS Work (MESSAGES 2)\r\n"
    await c.close()


async def test_toobig(make_imap: Factory) -> None:
    h = await make_imap(max_message_size=3000)
    c, _ = await _setup(h)
    big = message(3, body=b"y" * 1800 + b"\r\n")
    await c.send(b"a APPEND Work {%d+}\r\n%s\r\n" % (len(big), big))
    assert (await c.until_tagged(b"a"))[-1].startswith(b"a OK")
    reply = await _catenate(c, b"t", ["/Work/;UID=3", "/Work/;UID=3"])
    assert reply[-1].startswith(b"t NO [TOOBIG]"), reply
    st = await c.cmd(b"s STATUS Work (MESSAGES)")
    assert st[0] == b"* STATUS Work (MESSAGES 3)\r\n"
    await c.close()


async def test_catenate_in_a_multiappend_is_all_or_none(imap: ImapHarness) -> None:
    c, _ = await _setup(imap)
    m = message(7)
    ok_line = b'm APPEND Work {%d+}\r\n%s CATENATE (URL "/Work/;UID=2" TEXT {2+}\r\nxx)\r\n'
    await c.send(ok_line % (len(m), m))
    reply = await c.until_tagged(b"m")
    assert reply[-1].startswith(b"m OK [APPENDUID "), reply
    assert reply[-1].split(b" ")[4] == b"3:4]"
    assert await _body(c, 4) == message(2) + b"xx"
    # the second message's URL is bad: the first is not stored either
    await c.send(b'n APPEND Work {%d+}\r\n%s CATENATE (URL "/Work/;UID=77")\r\n' % (len(m), m))
    reply = await c.until_tagged(b"n")
    assert reply[-1].startswith(b"n NO [BADURL /Work/;UID=77]"), reply
    st = await c.cmd(b"s STATUS Work (MESSAGES)")
    assert st[0] == b"* STATUS Work (MESSAGES 4)\r\n"
    await c.close()
