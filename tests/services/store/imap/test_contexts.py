"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4) over real sockets: a session keeps a
SEARCH or SORT with RETURN (UPDATE) while another session (imaplib) changes the mailbox;
ADDTO / REMOVETO follow, expunged messages get none, CANCELUPDATE stops them; under
NOTIFY (RFC 5465) they come without a command."""

from __future__ import annotations

import imaplib

from tests.services.store.imap.conftest import ImapHarness, Line, message, ok


def _esearch(lines: list[bytes]) -> list[bytes]:
    return [ln.rstrip(b"\r\n") for ln in lines if ln.startswith(b"* ESEARCH")]


async def _setup(imap: ImapHarness) -> tuple[Line, imaplib.IMAP4]:
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    w = await imap.run(imap.imaplib)
    ok(*await imap.run(lambda: w.select("INBOX")))
    return c, w


async def test_search_update_addto_removeto_and_cancel(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2), message(3))
    c, w = await _setup(imap)
    try:
        caps = (await c.cmd(b"a CAPABILITY"))[0]
        assert b" CONTEXT=SEARCH" in caps and b" CONTEXT=SORT" in caps
        lines = await c.cmd(b"t1 UID SEARCH RETURN (UPDATE) UNSEEN")
        assert _esearch(lines) == [b'* ESEARCH (TAG "t1") UID ALL 1:3'], lines
        await imap.run(lambda: ok(*w.append("INBOX", None, None, message(4))))
        lines = await c.cmd(b"n NOOP")
        assert _esearch(lines) == [b'* ESEARCH (TAG "t1") UID ADDTO (0 4)'], lines
        await imap.run(lambda: ok(*w.uid("STORE", "2", "+FLAGS", "(\\Seen)")))
        lines = await c.cmd(b"n NOOP")
        assert _esearch(lines) == [b'* ESEARCH (TAG "t1") UID REMOVETO (0 2)'], lines

        def expunge_first() -> None:
            ok(*w.uid("STORE", "1", "+FLAGS", "(\\Deleted)"))
            ok(*w.expunge())

        await imap.run(expunge_first)
        lines = await c.cmd(b"n NOOP")
        # §4.2: the EXPUNGE takes message 1 out of the result; no REMOVETO for it
        assert b"* 1 EXPUNGE\r\n" in lines
        assert _esearch(lines) == [], lines
        # own changes count too: this session marks 3 seen
        lines = await c.cmd(b"f UID STORE 3 +FLAGS.SILENT (\\Seen)")
        assert _esearch(lines) == [b'* ESEARCH (TAG "t1") UID REMOVETO (0 3)'], lines
        assert (await c.cmd(b'x CANCELUPDATE "t1"'))[-1] == b"x OK CANCELUPDATE completed\r\n"
        await imap.run(lambda: ok(*w.append("INBOX", None, None, message(5))))
        lines = await c.cmd(b"n NOOP")
        assert b"* 4 EXISTS\r\n" in lines and _esearch(lines) == [], lines
        (bad,) = await c.cmd(b'y CANCELUPDATE "t1"')
        assert bad.startswith(b"y BAD")
        (bad,) = await c.cmd(b"y SEARCH RETURN (UPDATE MIN) ALL")
        assert bad.startswith(b"y BAD")
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_sequence_number_context(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2), message(3))
    c, w = await _setup(imap)
    try:
        lines = await c.cmd(b"t2 SEARCH RETURN (COUNT UPDATE) UNFLAGGED")
        assert _esearch(lines) == [b'* ESEARCH (TAG "t2") COUNT 3'], lines

        def flag_and_expunge() -> None:
            ok(*w.uid("STORE", "1", "+FLAGS", "(\\Deleted)"))
            ok(*w.expunge())
            ok(*w.uid("STORE", "3", "+FLAGS", "(\\Flagged)"))

        await imap.run(flag_and_expunge)
        lines = await c.cmd(b"n NOOP")
        # message 3 is sequence number 2 once message 1 is gone
        removeto = b'* ESEARCH (TAG "t2") REMOVETO (0 2)\r\n'
        assert lines.index(b"* 1 EXPUNGE\r\n") < lines.index(removeto), lines
        assert _esearch(lines) == [removeto.rstrip()], lines
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_sort_update_places_new_messages(imap: ImapHarness) -> None:
    await imap.deliver(message(1, subject="b"), message(2, subject="d"), message(3, subject="f"))
    c, w = await _setup(imap)
    try:
        lines = await c.cmd(b"t3 UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL")
        assert _esearch(lines) == [b'* ESEARCH (TAG "t3") UID ALL 1,2,3'], lines

        def two_more() -> None:
            ok(*w.append("INBOX", None, None, message(4, subject="e")))
            ok(*w.append("INBOX", None, None, message(5, subject="a")))

        await imap.run(two_more)
        lines = await c.cmd(b"n NOOP")
        # new order a b d e f: UID 5 at place 1, UID 4 at place 4
        assert _esearch(lines) == [b'* ESEARCH (TAG "t3") UID ADDTO (1 5 4 4)'], lines
        await imap.run(lambda: ok(*w.uid("STORE", "2", "+FLAGS", "(\\Deleted)")))
        lines = await c.cmd(b"t3 UID SORT RETURN (COUNT UPDATE) (REVERSE SUBJECT) UTF-8 UNDELETED")
        # the same tag replaces the context (§4.2)
        assert _esearch(lines) == [b'* ESEARCH (TAG "t3") UID COUNT 4'], lines
        await imap.run(lambda: ok(*w.uid("STORE", "2", "-FLAGS", "(\\Deleted)")))
        lines = await c.cmd(b"n NOOP")
        # reverse order f e d b a: UID 2 (d) back at place 3
        assert _esearch(lines) == [b'* ESEARCH (TAG "t3") UID ADDTO (3 2)'], lines
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_updates_come_unasked_under_notify(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    c, w = await _setup(imap)
    try:
        await c.cmd(b"n NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange))")
        lines = await c.cmd(b"t4 UID SEARCH RETURN (UPDATE) FLAGGED")
        assert _esearch(lines) == [b'* ESEARCH (TAG "t4") UID'], lines  # nothing flagged
        await imap.run(lambda: ok(*w.uid("STORE", "1", "+FLAGS", "(\\Flagged)")))
        assert (await c.line()).startswith(b"* 1 FETCH (UID 1 FLAGS (\\Flagged")
        assert await c.line() == b'* ESEARCH (TAG "t4") UID ADDTO (0 1)\r\n'
    finally:
        await imap.run(w.logout)
        await c.close()
