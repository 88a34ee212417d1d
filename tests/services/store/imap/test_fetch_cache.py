"""Range FETCHes: one engine call per chunk, none at all once ENVELOPE, BODYSTRUCTURE,
INTERNALDATE and RFC822.SIZE are cached (they never change for a UID)."""

from __future__ import annotations

from typing import Any

from tests.services.store.imap.conftest import ImapHarness, message


async def test_range_fetch_engine_calls(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i) for i in range(1, 31)])
    acct, _ = await imap.inbox()
    calls: list[int] = []
    real = acct.fetch

    async def counting(mailbox_id: int, uids: Any, *, parsed: bool = True) -> Any:
        calls.append(len(uids))
        return await real(mailbox_id, uids, parsed=parsed)

    acct.fetch = counting  # type: ignore[method-assign]
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    items = b"(UID FLAGS ENVELOPE BODYSTRUCTURE INTERNALDATE RFC822.SIZE)"
    first = await c.cmd(b"a FETCH 1:30 " + items)
    assert calls == [30]  # one round trip for the whole range
    second = await c.cmd(b"b FETCH 1:30 " + items)
    assert calls == [30]  # everything came from the view and the cache
    assert first[:-1] == second[:-1]
    await c.cmd(b"c FETCH 1:30 (BODY.PEEK[HEADER])")
    assert calls == [30, 30]
    await c.close()


async def test_list_page_items_cached(imap: ImapHarness) -> None:
    """A webmail list page's PREVIEW (RFC 8970) and BODY.PEEK[HEADER.FIELDS (...)] are
    read from the message file once; later FETCHes answer the same bytes from the cache,
    each field list (and .NOT) under its own entry."""
    await imap.deliver(*[message(i) for i in range(1, 11)])
    acct, _ = await imap.inbox()
    opened: list[int] = []
    real = acct.open_message

    def counting(rec: Any) -> Any:
        opened.append(rec.uid)
        return real(rec)

    acct.open_message = counting  # type: ignore[method-assign]
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    items = b"(UID PREVIEW BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])"
    first = await c.cmd(b"a UID FETCH 1:10 " + items)
    assert len(opened) == 10
    assert b"PREVIEW " in first[0] and b"Subject: message 1\r\n" in b"".join(first)
    second = await c.cmd(b"b UID FETCH 1:10 " + items)
    assert len(opened) == 10  # nothing read again
    assert first[:-1] == second[:-1]
    other = await c.cmd(b"c UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert len(opened) == 11
    assert b"Subject:" not in b"".join(other) and b"Message-ID:" in b"".join(other)
    negated = await c.cmd(b"d UID FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)])")
    assert len(opened) == 12
    assert b"Subject:" not in b"".join(negated) and b"Message-ID:" in b"".join(negated)
    await c.close()


async def test_list_page_shown_again_asks_the_engine_nothing(imap: ImapHarness) -> None:
    """A webmail list page's items all come from the session's view and the render cache
    once cached: the second FETCH of the page asks the engine for no record (and gives
    the same bytes); a message whose items are not cached yet is still read."""
    await imap.deliver(*[message(i) for i in range(1, 11)])
    acct, _ = await imap.inbox()
    calls: list[list[int]] = []
    real = acct.fetch

    async def counting(mailbox_id: int, uids: Any, *, parsed: bool = True) -> Any:
        calls.append(list(uids))
        return await real(mailbox_id, uids, parsed=parsed)

    acct.fetch = counting  # type: ignore[method-assign]
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    items = (
        b"(UID FLAGS RFC822.SIZE INTERNALDATE "
        b"BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT)] PREVIEW)"
    )
    first = await c.cmd(b"a UID FETCH 1:5 " + items)
    assert calls == [[1, 2, 3, 4, 5]]
    second = await c.cmd(b"b UID FETCH 1:5 " + items)
    assert calls == [[1, 2, 3, 4, 5]]  # nothing asked of the engine
    assert first[:-1] == second[:-1]
    assert b"PREVIEW " in b"".join(second) and b"Subject: message 1\r\n" in b"".join(second)
    await c.cmd(b"c UID FETCH 1:6 " + items)
    assert calls[1:] == [[6]]  # only the message not seen before
    await c.close()
