"""RFC822.SIZE is the length of BODY[] (RFC 3501 §7.4.2) for mail appended with bare LF;
SEARCH on indexed criteria runs beside other searches, only those reading message files
take a search slot."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.services.store.imap.conftest import ImapHarness, message


async def test_rfc822_size_is_the_length_of_body_for_bare_lf_appends(imap: ImapHarness) -> None:
    bare = b"From: a@example.org\nSubject: bare\n\nfirst\nsecond\rthird\n"
    c = await imap.raw_login()
    await c.send(b"a APPEND INBOX {%d}\r\n" % len(bare))
    assert (await c.line()).startswith(b"+")
    await c.send(bare + b"\r\n")
    assert (await c.until_tagged(b"a"))[-1].startswith(b"a OK [APPENDUID ")
    await c.cmd(b"s SELECT INBOX")
    await c.send(b"f UID FETCH 1 (RFC822.SIZE BODY.PEEK[])\r\n")
    head = await c.line()
    m = re.match(rb"\* 1 FETCH \(UID 1 RFC822\.SIZE (\d+) BODY\[\] \{(\d+)\}\r\n", head)
    assert m is not None, head
    body = await c.reader.readexactly(int(m.group(2)))
    assert int(m.group(1)) == len(body)
    assert body == b"From: a@example.org\r\nSubject: bare\r\n\r\nfirst\r\nsecond\r\nthird\r\n"
    assert (await c.until_tagged(b"f"))[-1].startswith(b"f OK")
    await c.close()


async def test_only_searches_reading_messages_take_the_search_slot(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i, subject=f"topic {i % 3}") for i in range(12)])
    gate = imap.rt.searches
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    indexed = [
        b"UID SEARCH FROM sender@",
        b"UID SEARCH SUBJECT topic UNSEEN",
        b'SEARCH OR TO alice CC nobody SINCE 1-Mar-2024 NOT BCC ""',
        b"SEARCH LARGER 10 SENTON 4-Mar-2024",
    ]
    for n, cmd in enumerate(indexed):
        reply = await c.cmd(b"i%d " % n + cmd)
        assert reply[-1].startswith(b"i%d OK" % n), reply
    assert gate.granted == 0
    reply = await c.cmd(b'i9 UID SEARCH SUBJECT "topic 1"')
    assert reply[0] == b"* SEARCH 2 5 8 11\r\n", reply
    reading = [b"UID SEARCH BODY second", b"UID SEARCH TEXT line", b"SEARCH HEADER Message-ID m3@"]
    for n, cmd in enumerate(reading):
        reply = await c.cmd(b"r%d " % n + cmd)
        assert reply[-1].startswith(b"r%d OK" % n), reply
    assert reply[0] == b"* SEARCH 4\r\n"
    assert gate.granted == len(reading)
    await c.close()


async def test_concurrent_indexed_searches_all_answer(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i, subject=f"topic {i % 4}") for i in range(40)])
    clients = [await imap.raw_login() for _ in range(6)]
    for c in clients:
        await c.cmd(b"s SELECT INBOX")

    async def many(c: Any, k: int) -> list[bytes]:
        out = []
        for j in range(10):
            reply = await c.cmd(b'q%d UID SEARCH SUBJECT "topic %d"' % (j, (k + j) % 4))
            out.append(reply[0])
        return out

    results = await asyncio.gather(*(many(c, k) for k, c in enumerate(clients)))
    for k, lines in enumerate(results):
        for j, line in enumerate(lines):
            want = [i + 1 for i in range(40) if i % 4 == (k + j) % 4]
            assert line == b"* SEARCH " + b" ".join(b"%d" % u for u in want) + b"\r\n"
    for c in clients:
        await c.close()
