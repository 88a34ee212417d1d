"""NOTIFY (RFC 5465) over real sockets: one session (a raw client that only reads) asks
for events, another (imaplib) makes the changes; the first gets the untagged responses
without sending a command, or in IDLE, as §3 allows."""

from __future__ import annotations

import imaplib
import re

from tests.services.store.imap.conftest import ImapHarness, Line, message, ok
from tests.services.store.imap.test_truncated_log import short_log

__all__ = ["short_log"]  # the fixture: a journal that keeps 5 records


async def _listener(imap: ImapHarness, *commands: bytes) -> Line:
    c = await imap.raw_login()
    for command in commands:
        reply = await c.cmd(command)
        assert reply[-1].split(b" ")[1] == b"OK", reply
    return c


async def _writer(imap: ImapHarness) -> imaplib.IMAP4:
    return await imap.run(imap.imaplib)  # a blocking client: in a thread


async def test_capability_after_login_only(imap: ImapHarness) -> None:
    c = await imap.raw()
    try:
        assert b" NOTIFY" not in (await c.cmd(b"a CAPABILITY"))[0]
        assert (await c.cmd(b"n NOTIFY NONE"))[-1].startswith(b"n BAD")
        await c.cmd(f'L LOGIN {"alice@example.com"} "correct horse battery"'.encode())
        assert b" NOTIFY" in (await c.cmd(b"b CAPABILITY"))[0]
    finally:
        await c.close()


async def test_status_for_other_mailboxes_unasked(imap: ImapHarness) -> None:
    acct, _ = await imap.inbox()
    await acct.create_mailbox("Lists")
    await imap.deliver(message(1))
    # §3 NOTIFY SET STATUS: the current STATUS of every watched mailbox comes first
    c = await imap.raw_login()
    w = await _writer(imap)
    try:
        lines = await c.cmd(b"n NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))")
        assert lines[-1].startswith(b"n OK"), lines
        # one STATUS per mailbox (INBOX and the default ones, Lists), INBOX first
        assert len(lines) - 1 == len(await acct.list_mailboxes())
        assert all(ln.startswith(b"* STATUS ") for ln in lines[:-1]), lines
        assert lines[0] == b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d UNSEEN 1)\r\n" % (
            (await acct.mailbox("INBOX")).uidvalidity
        )
        assert (
            b"* STATUS Lists (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %d UNSEEN 0)\r\n"
            % ((await acct.mailbox("Lists")).uidvalidity)
            in lines
        )
        # §5.2: a new message in a mailbox that is not selected → STATUS, no command sent
        await imap.run(lambda: ok(*w.append("Lists", None, None, message(2))))
        assert await c.line() == b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"

        # §5.3: an expunge there → STATUS again
        def expunge() -> None:
            ok(*w.select("Lists"))
            ok(*w.store("1", "+FLAGS", "\\Deleted"))
            ok(*w.expunge())

        await imap.run(expunge)
        assert await c.line() == b"* STATUS Lists (MESSAGES 0 UIDNEXT 2 UNSEEN 0)\r\n"
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_mailboxes_and_subtree_filters(imap: ImapHarness) -> None:
    acct, _ = await imap.inbox()
    for name in ("Other", "Lists", "Lists/ietf", "Listsx"):
        await acct.create_mailbox(name)
    events = b"(MessageNew MessageExpunge)"
    c = await _listener(
        imap, b"n NOTIFY SET (SUBTREE Lists %s) (MAILBOXES (INBOX) %s)" % (events, events)
    )
    w = await _writer(imap)
    try:
        # the unwatched mailboxes first: had they been reported, their STATUS would come
        # before the watched ones'
        def append(name: str) -> None:
            ok(*w.append(name, None, None, message(3)))

        for name in ("Other", "Listsx", "Lists/ietf", "INBOX"):
            await imap.run(lambda n=name: append(n))  # type: ignore[misc]
        assert await c.line() == b"* STATUS Lists/ietf (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
        assert await c.line() == b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
        # nothing else was owed: a NOOP's reply comes next
        assert await c.cmd(b"z NOOP") == [b"z OK NOOP completed\r\n"]
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_selected_pushes_new_messages_with_fetch_flags_and_expunges(
    imap: ImapHarness,
) -> None:
    await imap.deliver(message(1))
    c = await _listener(
        imap,
        b"s SELECT INBOX",
        b"n NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
        b"MessageExpunge FlagChange))",
    )
    w = await _writer(imap)
    try:
        await imap.run(lambda: ok(*w.append("INBOX", None, None, message(2, subject="pushed"))))
        # §5.2: EXISTS, then the FETCH asked for, unasked
        assert await c.line() == b"* 2 EXISTS\r\n"
        assert await c.line() == b"* 2 RECENT\r\n"  # this session sees it first
        fetch = await c.line()
        assert re.match(rb"\* 2 FETCH \(UID 2 BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}", fetch)
        assert await c.line() == b"Subject: pushed\r\n"
        assert await c.line() == b"\r\n"
        assert await c.line() == b")\r\n"
        # §5.4 FlagChange
        ok(*await imap.run(lambda: w.select("INBOX")))
        await imap.run(lambda: ok(*w.uid("STORE", "1", "+FLAGS", "(\\Flagged)")))
        assert await c.line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"

        # §5.3 / §6 SELECTED: the expunge comes at once, between commands
        def expunge() -> None:
            ok(*w.uid("STORE", "1", "+FLAGS", "(\\Deleted)"))
            ok(*w.expunge())

        await imap.run(expunge)
        lines = [await c.line()]
        while lines[-1] != b"* 1 EXPUNGE\r\n":
            lines.append(await c.line())
        assert lines[-1] == b"* 1 EXPUNGE\r\n"
        assert lines[0] == b"* 1 FETCH (UID 1 FLAGS (\\Deleted \\Flagged \\Recent))\r\n", lines
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_selected_delayed_holds_expunges_for_a_command_that_may_carry_them(
    imap: ImapHarness,
) -> None:
    await imap.deliver(message(1), message(2))
    c = await _listener(
        imap,
        b"s SELECT INBOX",
        b"n NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge FlagChange))",
    )
    w = await _writer(imap)
    try:

        def expunge_first_then_flag_second() -> None:
            ok(*w.select("INBOX"))
            ok(*w.uid("STORE", "1", "+FLAGS", "(\\Deleted)"))
            ok(*w.expunge())
            ok(*w.uid("STORE", "2", "+FLAGS", "(\\Answered)"))

        await imap.run(expunge_first_then_flag_second)
        # the flag change of message 2 comes, pushed; the expunge of 1 does not: message
        # 2 still has sequence number 2
        lines = [await c.line()]
        while not lines[-1].startswith(b"* 2 FETCH (UID 2 FLAGS (\\Answered"):
            lines.append(await c.line())
        assert not any(b"EXPUNGE" in ln for ln in lines), lines
        # RFC 3501 §7.4.1: not during FETCH either
        got = await c.cmd(b"f FETCH 2 UID")
        assert got == [b"* 2 FETCH (UID 2)\r\n", b"f OK FETCH completed\r\n"]
        got = await c.cmd(b"z NOOP")
        # the expunge, then RFC 3501 §7.3.2's new RECENT count (message 1 was recent here)
        assert got == [b"* 1 EXPUNGE\r\n", b"* 1 RECENT\r\n", b"z OK NOOP completed\r\n"]
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_mailbox_name_and_subscription_change(imap: ImapHarness) -> None:
    c = await _listener(imap, b"n NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))")
    w = await _writer(imap)
    try:
        await imap.run(lambda: ok(*w.create("Projects")))
        assert await c.line() == b'* LIST () "/" Projects\r\n'  # §5.5
        await imap.run(lambda: ok(*w.subscribe("Projects")))
        assert await c.line() == b'* LIST (\\Subscribed) "/" Projects\r\n'  # §5.6
        await imap.run(lambda: ok(*w.unsubscribe("Projects")))
        assert await c.line() == b'* LIST () "/" Projects\r\n'
        await imap.run(lambda: ok(*w.rename("Projects", "Done")))
        # §5.5: the new name with the old one in OLDNAME
        assert await c.line() == b'* LIST () "/" Done ("OLDNAME" (Projects))\r\n'
        await imap.run(lambda: ok(*w.delete("Done")))
        assert await c.line() == b'* LIST (\\NonExistent) "/" Done\r\n'
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_notify_none_and_idle(imap: ImapHarness) -> None:
    acct, _ = await imap.inbox()
    await acct.create_mailbox("Lists")
    c = await _listener(imap, b"n NOTIFY SET (MAILBOXES Lists (MessageNew MessageExpunge))")
    w = await _writer(imap)
    try:
        # in IDLE the notification comes too
        await c.send(b"i IDLE\r\n")
        assert (await c.line()).startswith(b"+ ")
        await imap.run(lambda: ok(*w.append("Lists", None, None, message(1))))
        assert await c.line() == b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n"
        await c.send(b"DONE\r\n")
        assert await c.line() == b"i OK IDLE terminated\r\n"
        # §3 NOTIFY NONE: nothing any more
        assert await c.cmd(b"x NOTIFY NONE") == [b"x OK NOTIFY completed\r\n"]
        await imap.run(lambda: ok(*w.append("Lists", None, None, message(2))))
        assert await c.cmd(b"z NOOP") == [b"z OK NOOP completed\r\n"]
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_flag_change_elsewhere_and_condstore(imap: ImapHarness) -> None:
    acct, _ = await imap.inbox()
    box = await acct.create_mailbox("Lists")
    await acct.append(box.id, message(1))
    c = await _listener(
        imap,
        b"e ENABLE CONDSTORE",
        b"n NOTIFY SET (MAILBOXES Lists (MessageNew MessageExpunge FlagChange))",
    )
    w = await _writer(imap)
    try:

        def seen() -> None:
            ok(*w.select("Lists"))
            ok(*w.store("1", "+FLAGS", "\\Seen"))

        await imap.run(seen)
        st = await acct.status(box.id)
        # §5.4 FlagChange elsewhere: UNSEEN, and HIGHESTMODSEQ under CONDSTORE
        assert await c.line() == b"* STATUS Lists (UNSEEN 0 HIGHESTMODSEQ %d)\r\n" % (
            st.highestmodseq
        )
    finally:
        await imap.run(w.logout)
        await c.close()


async def test_refusals(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    try:
        # §5: an event this server does not deliver
        (no,) = await c.cmd(b"a NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))")
        assert no == (
            b"a NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
            b"SubscriptionChange)] Unsupported event\r\n"
        )
        for bad in (
            b"b NOTIFY SET (PERSONAL (MessageNew))",  # §5: MessageExpunge must come too
            b"b NOTIFY SET (INBOXES (FlagChange))",  # needs MessageNew/MessageExpunge
            b"b NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))",  # fetch-att: SELECTED
            b"b NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",
            b"b NOTIFY SET",
            b"b NOTIFY SET (NOWHERE NONE)",
            b"b NOTIFY",
        ):
            (reply,) = await c.cmd(bad)
            assert reply.startswith(b"b BAD"), (bad, reply)
        assert (await c.cmd(b"c NOTIFY SET (INBOXES NONE)"))[-1] == b"c OK NOTIFY completed\r\n"
    finally:
        await c.close()


async def test_overflow_when_the_journal_was_pruned(imap: ImapHarness, short_log: None) -> None:
    """§5.8: a session that cannot be told what happened (the journal kept fewer records
    than it missed) gets NOTIFICATIONOVERFLOW and NOTIFY ends."""
    acct, _ = await imap.inbox()
    box = await acct.create_mailbox("Lists")
    c = await _listener(imap, b"n NOTIFY SET (MAILBOXES Lists (MessageNew MessageExpunge))")
    try:
        # the session waits inside a command (for an APPEND's literal): it delivers nothing
        await c.send(b"a APPEND INBOX {%d}\r\n" % len(message(1)))
        assert (await c.line()).startswith(b"+ ")
        for n in range(8):  # more than the journal keeps (5, short_log)
            await acct.append(box.id, message(n))
        await c.send(message(1) + b"\r\n")
        reply = await c.until_tagged(b"a")
        assert reply[0] == b"* OK [NOTIFICATIONOVERFLOW] Too many changes; NOTIFY is off\r\n"
        assert reply[-1].startswith(b"a OK [APPENDUID ")
        await acct.append(box.id, message(9))
        assert await c.cmd(b"z NOOP") == [b"z OK NOOP completed\r\n"]
    finally:
        await c.close()


async def test_new_message_fetch_that_cannot_be_answered(imap: ImapHarness) -> None:
    """A fetch-att the new message cannot give (RFC 3516 §4.3: BINARY of an unknown
    encoding) leaves the EXISTS and the session as they are."""
    await imap.deliver(message(1))
    c = await _listener(
        imap,
        b"s SELECT INBOX",
        b"n NOTIFY SET (SELECTED (MessageNew (UID BINARY.PEEK[1]) MessageExpunge))",
    )
    w = await _writer(imap)
    odd = (
        b"From: a@example.net\r\nSubject: odd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-unheard-of\r\n\r\nxyz\r\n"
    )
    try:
        await imap.run(lambda: ok(*w.append("INBOX", None, None, odd)))
        assert await c.line() == b"* 2 EXISTS\r\n"
        reply = await c.cmd(b"z NOOP")
        assert reply[-1] == b"z OK NOOP completed\r\n", reply
        assert not any(b"FETCH" in ln for ln in reply), reply
    finally:
        await imap.run(w.logout)
        await c.close()
