"""The selected mailbox as a session sees it: \\Recent (RFC 3501 §2.3.2, §6.3.2, §7.3.2) and
the announcement of new keywords with FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6), driven
over real sockets with the exact exchange a strict client checks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.services.store.imap.conftest import ImapHarness, message

SYSTEM = b"\\Answered \\Deleted \\Draft \\Flagged \\Seen"


def _untagged(reply: list[bytes]) -> list[bytes]:
    return reply[:-1]


# --- defect 8: EXAMINE reports \Recent without claiming it ----------------------------------


async def test_examine_reports_recent_without_claiming(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2))
    a = await imap.raw_login()
    b = await imap.raw_login()
    try:
        reply = await a.cmd(b"e EXAMINE INBOX")
        assert b"* 2 RECENT\r\n" in reply, reply
        reply = await a.cmd(b"f FETCH 1:2 FLAGS")
        assert _untagged(reply) == [
            b"* 1 FETCH (FLAGS (\\Recent))\r\n",
            b"* 2 FETCH (FLAGS (\\Recent))\r\n",
        ]
        # the read-only session did not take \Recent away from the next one to SELECT
        reply = await b.cmd(b"s SELECT INBOX")
        assert b"* 2 RECENT\r\n" in reply, reply
        reply = await b.cmd(b"f FETCH 1 FLAGS")
        assert _untagged(reply) == [b"* 1 FETCH (FLAGS (\\Recent))\r\n"]
        # once claimed, a later EXAMINE reports none (RFC 3501 §2.3.2: one session only)
        reply = await a.cmd(b"g EXAMINE INBOX")
        assert b"* 0 RECENT\r\n" in reply, reply
    finally:
        await a.close()
        await b.close()


async def test_examine_sees_new_recent_messages_unclaimed(imap: ImapHarness) -> None:
    a = await imap.raw_login()
    b = await imap.raw_login()
    try:
        await a.cmd(b"e EXAMINE INBOX")
        await imap.deliver(message(1))
        reply = await a.cmd(b"n NOOP")
        assert _untagged(reply) == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
        reply = await b.cmd(b"s SELECT INBOX")
        assert b"* 1 RECENT\r\n" in reply, reply
    finally:
        await a.close()
        await b.close()


# --- defect 9: a new keyword is announced before FETCH FLAGS uses it -------------------------


async def test_own_store_of_new_keyword_announces_flags_first(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    a = await imap.raw_login()
    try:
        await a.cmd(b"s SELECT INBOX")
        reply = await a.cmd(b"t STORE 1 +FLAGS ($Work)")
        assert _untagged(reply) == [
            b"* FLAGS (" + SYSTEM + b" $Work)\r\n",
            b"* OK [PERMANENTFLAGS (" + SYSTEM + b" $Work \\*)] Flags permitted\r\n",
            b"* 1 FETCH (FLAGS ($Work \\Recent))\r\n",
        ]
        # known now: not announced again
        reply = await a.cmd(b"u STORE 1 -FLAGS ($Work)")
        assert _untagged(reply) == [b"* 1 FETCH (FLAGS (\\Recent))\r\n"]
        reply = await a.cmd(b"v STORE 1 +FLAGS ($Work)")
        assert _untagged(reply) == [b"* 1 FETCH (FLAGS ($Work \\Recent))\r\n"]
    finally:
        await a.close()


async def test_silent_store_of_new_keyword_still_announces(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    a = await imap.raw_login()
    try:
        await a.cmd(b"s SELECT INBOX")
        reply = await a.cmd(b"t STORE 1 +FLAGS.SILENT (Later)")
        assert _untagged(reply)[:2] == [
            b"* FLAGS (" + SYSTEM + b" Later)\r\n",
            b"* OK [PERMANENTFLAGS (" + SYSTEM + b" Later \\*)] Flags permitted\r\n",
        ]
    finally:
        await a.close()


async def test_keyword_from_another_session_announced_before_fetch(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    a = await imap.raw_login()
    b = await imap.raw_login()
    try:
        await a.cmd(b"s SELECT INBOX")
        await b.cmd(b"s SELECT INBOX")
        await b.cmd(b"t STORE 1 +FLAGS.SILENT ($Label1)")
        reply = await a.cmd(b"n NOOP")
        assert _untagged(reply) == [
            b"* FLAGS (" + SYSTEM + b" $Label1)\r\n",
            b"* OK [PERMANENTFLAGS (" + SYSTEM + b" $Label1 \\*)] Flags permitted\r\n",
            b"* 1 FETCH (UID 1 FLAGS ($Label1 \\Recent))\r\n",
        ]
    finally:
        await a.close()
        await b.close()


async def test_keyword_of_appended_message_announced_before_exists(imap: ImapHarness) -> None:
    a = await imap.raw_login()
    b = await imap.raw_login()
    try:
        await a.cmd(b"s EXAMINE INBOX")
        msg = message(1)
        await b.send(b"t APPEND INBOX (Urgent) {%d}\r\n" % len(msg))
        assert (await b.line()).startswith(b"+")
        await b.send(msg + b"\r\n")  # the literal, then the line end of the command
        reply = await b.until_tagged(b"t")
        assert reply[-1].startswith(b"t OK"), reply
        reply = await a.cmd(b"n NOOP")
        assert _untagged(reply) == [
            b"* FLAGS (" + SYSTEM + b" Urgent)\r\n",
            b"* OK [PERMANENTFLAGS ()] Flags permitted\r\n",  # read-only: none permanent
            b"* 1 EXISTS\r\n",
            b"* 1 RECENT\r\n",
        ]
        reply = await a.cmd(b"f FETCH 1 FLAGS")
        assert _untagged(reply) == [b"* 1 FETCH (FLAGS (Urgent \\Recent))\r\n"]
    finally:
        await a.close()
        await b.close()


# --- defect 10: RECENT never exceeds EXISTS ---------------------------------------------------


async def test_recent_claims_only_messages_the_session_was_told_about(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message committed between the session reading the change log and claiming
    \\Recent is not yet in its view: it must not be counted (old: ``* 1 EXISTS``,
    ``* 2 RECENT``), and is reported, recent, with the next EXISTS."""
    acct, inbox = await imap.inbox()
    a = await imap.raw_login()
    try:
        await a.cmd(b"s SELECT INBOX")
        real = acct.changes_since
        sneaked: list[int] = []

        async def changes_then_delivery(*args: Any, **kwargs: Any) -> Any:
            found = await real(*args, **kwargs)
            if not sneaked:  # once: another delivery commits right after this read
                sneaked.append((await acct.append(inbox, message(2))).uid)
            return found

        monkeypatch.setattr(acct, "changes_since", changes_then_delivery)
        await imap.deliver(message(1))
        reply = await a.cmd(b"n NOOP")
        assert _untagged(reply) == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
        assert sneaked == [2]
        reply = await a.cmd(b"m NOOP")
        assert _untagged(reply) == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]
        reply = await a.cmd(b"f FETCH 1:2 FLAGS")
        assert _untagged(reply) == [
            b"* 1 FETCH (FLAGS (\\Recent))\r\n",
            b"* 2 FETCH (FLAGS (\\Recent))\r\n",
        ]
    finally:
        await a.close()


async def test_recent_is_resent_after_expunge(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2), message(3))
    a = await imap.raw_login()
    try:
        reply = await a.cmd(b"s SELECT INBOX")
        assert b"* 3 RECENT\r\n" in reply
        await a.cmd(b"d STORE 2 +FLAGS.SILENT (\\Deleted)")
        reply = await a.cmd(b"x EXPUNGE")
        assert _untagged(reply) == [b"* 2 EXPUNGE\r\n", b"* 2 RECENT\r\n"]
    finally:
        await a.close()


async def test_recent_after_expunge_by_another_session(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2))
    a = await imap.raw_login()
    b = await imap.raw_login()
    try:
        await a.cmd(b"s SELECT INBOX")  # claims both
        await b.cmd(b"s SELECT INBOX")
        await b.cmd(b"d STORE 1 +FLAGS.SILENT (\\Deleted)")
        await b.cmd(b"x EXPUNGE")
        reply = await a.cmd(b"n NOOP")
        assert _untagged(reply) == [b"* 1 EXPUNGE\r\n", b"* 1 RECENT\r\n"]
    finally:
        await a.close()
        await b.close()
