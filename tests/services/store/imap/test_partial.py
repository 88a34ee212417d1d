"""PARTIAL (RFC 9394; RFC 5267 §4.4 for ESORT) over a real socket: SEARCH, SORT and FETCH
pages, counted from the first or (negative) from the last result, on a mailbox whose UIDs
have gaps; the pure position picker against a slice model."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.store.imap import partial
from tests.services.store.imap.conftest import ImapHarness, message


@given(st.lists(st.integers(), max_size=30), st.integers(1, 40), st.integers(1, 40), st.booleans())
def test_pick_matches_positions(results: list[int], a: int, b: int, last: bool) -> None:
    lo, hi = sorted((a, b))
    positions = range(lo, hi + 1)
    if last:
        # -1 is the last result, -2 the one before...
        want = [results[len(results) - p] for p in reversed(positions) if p <= len(results)]
        assert partial.pick(results, (-a, -b)) == want
    else:
        want = [results[p - 1] for p in positions if p <= len(results)]
        assert partial.pick(results, (a, b)) == want


async def _uid_gaps(imap: ImapHarness) -> list[int]:
    """Ten messages, then every third expunged: UIDs 1,2,4,5,7,8,10 remain."""
    acct, inbox = await imap.inbox()
    uids = await imap.deliver(*[message(n, subject=f"s{10 - n:02d}") for n in range(1, 11)])
    gone = uids[2::3]
    from mailcore.mailstore import FlagOp

    await acct.store_flags(inbox, gone, FlagOp.ADD, {"\\Deleted"})
    await acct.expunge(inbox, gone)
    return [u for u in uids if u not in gone]


async def test_search_partial(imap: ImapHarness) -> None:
    left = await _uid_gaps(imap)
    assert left == [1, 2, 4, 5, 7, 8, 10]
    c = await imap.raw_login()
    try:
        caps = (await c.cmd(b"a CAPABILITY"))[0]
        assert b" PARTIAL" in caps
        await c.cmd(b"s SELECT INBOX")
        for command, data in (
            (b"UID SEARCH RETURN (PARTIAL 1:3) ALL", b"UID PARTIAL (1:3 1:2,4)"),
            (b"UID SEARCH RETURN (PARTIAL 3:1) ALL", b"UID PARTIAL (3:1 1:2,4)"),
            (b"UID SEARCH RETURN (PARTIAL -1:-2) ALL", b"UID PARTIAL (-1:-2 8,10)"),
            (b"UID SEARCH RETURN (PARTIAL 6:100) ALL", b"UID PARTIAL (6:100 8,10)"),
            (b"UID SEARCH RETURN (PARTIAL 8:9) ALL", b"UID PARTIAL (8:9 NIL)"),
            (b"SEARCH RETURN (PARTIAL -2:-3 COUNT) ALL", b"COUNT 7 PARTIAL (-2:-3 5:6)"),
            (b"SEARCH RETURN (MIN PARTIAL 1:1) UID 5:*", b"MIN 4 PARTIAL (1:1 4)"),
        ):
            lines = await c.cmd(b"x " + command)
            assert lines[0] == b'* ESEARCH (TAG "x") ' + data + b"\r\n", (command, lines)
            assert len(lines) == 2 and lines[1].startswith(b"x OK"), lines
        for bad in (
            b"b SEARCH RETURN (PARTIAL 0:2) ALL",
            b"b SEARCH RETURN (PARTIAL -1:2) ALL",
            b"b SEARCH RETURN (PARTIAL 1:2 ALL) ALL",
            b"b SEARCH RETURN (PARTIAL) ALL",
            b"b SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL",
        ):
            (reply,) = await c.cmd(bad)
            assert reply.startswith(b"b BAD"), (bad, reply)
    finally:
        await c.close()


async def test_sort_and_fetch_partial(imap: ImapHarness) -> None:
    await _uid_gaps(imap)
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX")
        # subjects run backwards (s09 … s00): SUBJECT order is UID order reversed
        lines = await c.cmd(b"x UID SORT RETURN (PARTIAL 1:3) (SUBJECT) UTF-8 ALL")
        assert lines[0] == b'* ESEARCH (TAG "x") UID PARTIAL (1:3 10,8,7)\r\n', lines
        lines = await c.cmd(b"x SORT RETURN (COUNT PARTIAL -1:-2) (SUBJECT) UTF-8 ALL")
        assert lines[0] == b'* ESEARCH (TAG "x") COUNT 7 PARTIAL (-1:-2 2,1)\r\n', lines
        lines = await c.cmd(b"x SORT RETURN (PARTIAL 50:60) (SUBJECT) UTF-8 ALL")
        assert lines[0] == b'* ESEARCH (TAG "x") PARTIAL (50:60 NIL)\r\n', lines
        # RFC 9394 §4: the last two messages of 1:*, and the first two of UID 4:*
        lines = await c.cmd(b"f UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)")
        assert [ln.split(b" FLAGS")[0] for ln in lines] == [
            b"* 6 FETCH (UID 8",
            b"* 7 FETCH (UID 10",
            b"f OK UID FETCH completed\r\n",
        ], lines
        lines = await c.cmd(b"f UID FETCH 4:* (UID) (PARTIAL 1:2)")
        assert lines[:-1] == [b"* 3 FETCH (UID 4)\r\n", b"* 4 FETCH (UID 5)\r\n"], lines
        (bad,) = await c.cmd(b"b FETCH 1:* (UID) (PARTIAL 0:1)")
        assert bad.startswith(b"b BAD")
    finally:
        await c.close()
