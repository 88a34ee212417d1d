"""OBJECTID (RFC 8474) over a real socket: MAILBOXID on CREATE, SELECT and STATUS, kept by
RENAME and new for a re-created name; EMAILID kept by COPY and MOVE, searchable; THREADID
NIL (no threads) and matching nothing."""

from __future__ import annotations

import re

from tests.services.store.imap.conftest import ImapHarness, Line, message

_MAILBOXID = re.compile(rb"MAILBOXID \((M\d+)\)")
_EMAILID = re.compile(rb"^\* (\d+) FETCH \(EMAILID \((E\d+)\) THREADID NIL\)\r\n$")


async def _mailboxid(c: Line, name: bytes) -> bytes:
    reply = await c.cmd(b"s STATUS " + name + b" (MAILBOXID)")
    m = _MAILBOXID.search(reply[0])
    assert m and reply[0].startswith(b"* STATUS " + name + b" (MAILBOXID ("), reply
    return m.group(1)


async def _emailids(c: Line) -> list[bytes]:
    reply = await c.cmd(b"f FETCH 1:* (EMAILID THREADID)")
    out = []
    for ln in reply[:-1]:
        m = _EMAILID.match(ln)
        assert m, ln
        out.append(m.group(2))
    return out


async def test_mailboxid_lifetime(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    try:
        reply = await c.cmd(b"a CAPABILITY")
        assert b" OBJECTID" in reply[0]
        reply = await c.cmd(b"b CREATE foo")
        m = _MAILBOXID.search(reply[-1])
        assert m and reply[-1].startswith(b"b OK [MAILBOXID ("), reply  # RFC 8474 §4.1
        created = m.group(1)
        assert await _mailboxid(c, b"foo") == created
        reply = await c.cmd(b"c SELECT foo")
        assert b"* OK [MAILBOXID (%s)] Ok\r\n" % created in reply  # §4.2
        await c.cmd(b"d UNSELECT")
        await c.cmd(b"e RENAME foo bar")
        assert await _mailboxid(c, b"bar") == created  # RENAME keeps it
        await c.cmd(b"g DELETE bar")
        await c.cmd(b"h CREATE bar")
        assert await _mailboxid(c, b"bar") != created  # a new mailbox, a new id
        assert await _mailboxid(c, b"INBOX") not in (created, await _mailboxid(c, b"bar"))
    finally:
        await c.close()


async def test_emailid_kept_by_copy_and_move_and_searchable(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2), message(3))
    c = await imap.raw_login()
    try:
        await c.cmd(b"a CREATE Other")
        await c.cmd(b"b SELECT INBOX")
        ids = await _emailids(c)
        assert len(set(ids)) == 3  # distinct messages, distinct ids
        await c.cmd(b"c COPY 1 Other")
        await c.cmd(b"d MOVE 2 Other")
        reply = await c.cmd(b"e SEARCH EMAILID " + ids[2])
        assert reply[0] == b"* SEARCH 2\r\n"  # message 3 is now number 2
        reply = await c.cmd(b"g SEARCH THREADID T1")
        assert reply[0] == b"* SEARCH\r\n"
        reply = await c.cmd(b"h SEARCH EMAILID Enope")
        assert reply[0] == b"* SEARCH\r\n"
        reply = await c.cmd(b"i SEARCH EMAILID bad!id")
        assert reply[-1].startswith(b"i BAD"), reply
        await c.cmd(b"j SELECT Other")
        assert await _emailids(c) == [ids[0], ids[1]]  # §5.1: COPY and MOVE keep it
        reply = await c.cmd(b"k UID SEARCH EMAILID " + ids[1] + b" BODY message")
        assert reply[0] == b"* SEARCH 2\r\n"  # also in a search that reads messages
    finally:
        await c.close()


async def test_appended_twice_is_two_emails(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(1))
    c = await imap.raw_login()
    try:
        await c.cmd(b"b SELECT INBOX")
        a, b = await _emailids(c)
        assert a != b
    finally:
        await c.close()
