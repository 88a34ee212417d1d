"""CONDSTORE details (RFC 7162) over a real socket: HIGHESTMODSEQ when a CONDSTORE-enabling
command enables it while a mailbox is selected (§3.1), and the MODSEQ of an ESEARCH that
returns only MIN or MAX (§3.1.5 with RFC 4731)."""

from __future__ import annotations

import re

import pytest

from tests.services.store.imap.conftest import ImapHarness, Line, message


async def _modseqs(c: Line) -> dict[int, int]:
    reply = await c.cmd(b"m FETCH 1:* (MODSEQ)")
    return {
        int(m.group(1)): int(m.group(2))
        for ln in reply[:-1]
        if (m := re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", ln))
    }


@pytest.mark.parametrize(
    "command",
    [
        b"t FETCH 1 (FLAGS MODSEQ)",
        b"t FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
        b"t SEARCH MODSEQ 1",
        b"t STORE 1 (UNCHANGEDSINCE 1000000) +FLAGS (\\Seen)",
        b"t STATUS INBOX (HIGHESTMODSEQ)",
    ],
)
async def test_enabling_command_while_selected_sends_highestmodseq(
    imap: ImapHarness, command: bytes
) -> None:
    await imap.deliver(message(1), message(2))
    c = await imap.raw_login()
    try:
        reply = await c.cmd(b"s SELECT INBOX")
        assert not any(b"HIGHESTMODSEQ" in ln for ln in reply), reply
        acct, inbox = await imap.inbox()
        highest = (await acct.status(inbox)).highestmodseq
        reply = await c.cmd(command)
        assert reply[0] == b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % highest, reply
        assert reply[-1].startswith(b"t OK"), reply
        # once only: CONDSTORE is on now
        reply = await c.cmd(b"u FETCH 1 (MODSEQ)")
        assert not any(b"HIGHESTMODSEQ" in ln for ln in reply), reply
    finally:
        await c.close()


async def test_select_condstore_then_enabling_command_sends_nothing_more(
    imap: ImapHarness,
) -> None:
    await imap.deliver(message(1))
    c = await imap.raw_login()
    try:
        reply = await c.cmd(b"s SELECT INBOX (CONDSTORE)")
        assert any(b"OK [HIGHESTMODSEQ" in ln for ln in reply), reply
        reply = await c.cmd(b"t FETCH 1 (MODSEQ)")
        assert not any(b"HIGHESTMODSEQ" in ln for ln in reply), reply
    finally:
        await c.close()


async def test_enabling_command_while_not_selected_sends_no_highestmodseq(
    imap: ImapHarness,
) -> None:
    c = await imap.raw_login()
    try:
        reply = await c.cmd(b"t STATUS INBOX (HIGHESTMODSEQ)")
        assert not any(b"[HIGHESTMODSEQ" in ln for ln in reply), reply
        reply = await c.cmd(b"s SELECT INBOX")
        assert any(b"[HIGHESTMODSEQ" in ln for ln in reply), reply  # enabled: SELECT says it
    finally:
        await c.close()


async def test_esearch_min_max_modseq_is_that_of_returned_message(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2), message(3))
    c = await imap.raw_login()
    try:
        await c.cmd(b"s SELECT INBOX (CONDSTORE)")
        await c.cmd(b"f STORE 2 +FLAGS.SILENT (\\Flagged)")  # message 2 now has the highest
        ms = await _modseqs(c)
        assert ms[2] > max(ms[1], ms[3])
        reply = await c.cmd(b"a SEARCH RETURN (MIN) MODSEQ 1")
        assert reply[0] == b'* ESEARCH (TAG "a") MIN 1 MODSEQ %d\r\n' % ms[1]
        reply = await c.cmd(b"b SEARCH RETURN (MAX) MODSEQ 1")
        assert reply[0] == b'* ESEARCH (TAG "b") MAX 3 MODSEQ %d\r\n' % ms[3]
        reply = await c.cmd(b"c SEARCH RETURN (MIN MAX) MODSEQ 1")
        assert reply[0] == b'* ESEARCH (TAG "c") MIN 1 MAX 3 MODSEQ %d\r\n' % max(ms[1], ms[3])
        # with ALL or COUNT, every match counts (RFC 4731 §3.1 / RFC 7162 §3.1.5)
        reply = await c.cmd(b"d SEARCH RETURN (MIN COUNT) MODSEQ 1")
        assert reply[0] == b'* ESEARCH (TAG "d") MIN 1 MODSEQ %d COUNT 3\r\n' % ms[2]
        reply = await c.cmd(b"e UID SEARCH RETURN (MAX) MODSEQ 1")
        assert reply[0] == b'* ESEARCH (TAG "e") UID MAX 3 MODSEQ %d\r\n' % ms[3]
    finally:
        await c.close()
