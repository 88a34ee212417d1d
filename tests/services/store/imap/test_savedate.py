"""SAVEDATE (RFC 8514) over a real socket: FETCH SAVEDATE is when the message was saved
in this mailbox (APPEND, COPY), not its internal date; SEARCH SAVEDBEFORE / SAVEDON /
SAVEDSINCE and SAVEDATESUPPORTED; the capability."""

from __future__ import annotations

import datetime
import re

from tests.services.store.imap.conftest import ImapHarness, message

OLD = 946684800.0  # 2000-01-01: the internal date given at APPEND


def _imap_day(d: datetime.date) -> bytes:
    return d.strftime("%d-%b-%Y").encode()


async def test_fetch_and_search_save_date(imap: ImapHarness) -> None:
    acct, _ = await imap.inbox()
    await acct.create_mailbox("Work")
    await imap.deliver(message(1), message(2), date=OLD)
    today = datetime.datetime.now(datetime.UTC).date()
    c = await imap.raw_login()
    try:
        caps = (await c.cmd(b"a CAPABILITY"))[0]
        assert b" SAVEDATE" in caps
        await c.cmd(b"s SELECT INBOX")
        lines = await c.cmd(b"f FETCH 1:2 (INTERNALDATE SAVEDATE)")
        assert lines[-1].startswith(b"f OK")
        for line in lines[:-1]:
            m = re.search(rb'INTERNALDATE "([^"]+)" SAVEDATE "([^"]+)"', line)
            assert m is not None, line
            assert m.group(1).startswith(b"01-Jan-2000")
            saved = datetime.datetime.strptime(m.group(2).decode(), "%d-%b-%Y %H:%M:%S %z")
            assert abs(saved.timestamp() - datetime.datetime.now(datetime.UTC).timestamp()) < 3600
        tomorrow = today + datetime.timedelta(days=1)
        for command, expected in (
            (b"SEARCH SAVEDON " + _imap_day(today), b"* SEARCH 1 2"),
            (b"SEARCH SAVEDSINCE " + _imap_day(today), b"* SEARCH 1 2"),
            (b"SEARCH SAVEDBEFORE " + _imap_day(today), b"* SEARCH"),
            (b"SEARCH SAVEDSINCE " + _imap_day(tomorrow), b"* SEARCH"),
            (b"SEARCH BEFORE 02-Jan-2000", b"* SEARCH 1 2"),  # the internal date
            (b"SEARCH SAVEDATESUPPORTED", b"* SEARCH 1 2"),
            (b"UID SEARCH SAVEDATESUPPORTED SAVEDBEFORE " + _imap_day(tomorrow), b"* SEARCH 1 2"),
        ):
            lines = await c.cmd(b"x " + command)
            assert [ln.rstrip(b"\r\n") for ln in lines[:-1]] == [expected], command
            assert lines[-1].startswith(b"x OK")
        assert (await c.cmd(b"c COPY 1 Work"))[-1].startswith(b"c OK")
        await c.cmd(b"s SELECT Work")
        lines = await c.cmd(b"f FETCH 1 SAVEDATE")
        assert re.search(rb"SAVEDATE \"[^\"]+\"", lines[0]), lines
        (bad,) = await c.cmd(b"b SEARCH SAVEDON yesterday")
        assert bad.startswith(b"b BAD")
    finally:
        await c.close()
