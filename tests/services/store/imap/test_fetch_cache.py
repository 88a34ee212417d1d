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
