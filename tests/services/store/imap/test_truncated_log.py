"""A session whose last look at the mailbox is older than the change log reaches back
(the engine keeps the newest entries only) is brought up to date from a fresh snapshot:
expunges, new mail and flag changes are reported as RFC 3501 §7.4.1 allows, and the
session goes on. A view that cannot be rebuilt ends with a BYE that says why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailcore.mailstore import ChangeLogTruncated
from mailcore.mailstore import core as engine_core
from tests.services.store.imap.conftest import ImapHarness, message
from tests.services.store.imap.test_multisession import Client


@pytest.fixture
def short_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # keep 5 change log entries, prune after every commit, remember 4 in memory
    monkeypatch.setattr(engine_core, "CHANGES_KEPT", 5)
    monkeypatch.setattr(engine_core, "PRUNE_EVERY", 1)
    monkeypatch.setattr(engine_core, "CHANGES_IN_MEMORY", 4)
    yield


async def test_session_catches_up_after_the_change_log_was_pruned(
    imap: ImapHarness, short_log: None
) -> None:
    await imap.deliver(*[message(i) for i in range(1, 7)])
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT INBOX")
    await b.cmd(b"SELECT INBOX")
    await a.cmd(b"FETCH 1:* (UID FLAGS)")
    seen = a.view.uids[:]
    # b changes a lot: flags, two expunges, new mail, then more than the log keeps
    await b.cmd(b"STORE 1 +FLAGS (\\Flagged)")
    await b.cmd(b"STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    await b.cmd(b"EXPUNGE")
    await imap.deliver(message(7), message(8))
    for _ in range(4):
        await b.cmd(b"STORE 4 +FLAGS (\\Seen)")
        await b.cmd(b"STORE 4 -FLAGS (\\Seen)")
    acct, inbox = await imap.inbox()
    with pytest.raises(ChangeLogTruncated):  # the log no longer reaches a's last look
        await acct.changes_since(1, inbox)
    # a's next command gets every difference, in an order RFC 3501 §7.4.1 allows
    reply = await a.cmd(b"NOOP")
    assert b"* 3 EXPUNGE\r\n" in reply and b"* 2 EXPUNGE\r\n" in reply
    assert reply.index(b"* 3 EXPUNGE\r\n") < reply.index(b"* 2 EXPUNGE\r\n")
    assert any(ln.startswith(b"* 1 FETCH (UID %d FLAGS (" % seen[0]) for ln in reply)
    # the view agrees with the store, message by message
    snap = await acct.snapshot(inbox)
    await a.cmd(b"FETCH 1:* (UID FLAGS)")
    assert a.view.uids == snap.uids
    for uid, flags in zip(snap.uids, snap.flags, strict=True):
        assert a.view.flags[uid] == frozenset(f.encode() for f in flags)
    # and the session carries on normally afterwards
    await imap.deliver(message(9))
    reply = await a.cmd(b"NOOP")
    assert b"* %d EXISTS\r\n" % (len(snap.uids) + 1) in reply
    await a.c.close()
    await b.c.close()


async def test_no_expunge_during_fetch_after_truncation(imap: ImapHarness, short_log: None) -> None:
    await imap.deliver(*[message(i) for i in range(1, 4)])
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT INBOX")
    await b.cmd(b"SELECT INBOX")
    await b.cmd(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    await b.cmd(b"EXPUNGE")
    for _ in range(4):
        await b.cmd(b"STORE 2 +FLAGS (\\Seen)")
        await b.cmd(b"STORE 2 -FLAGS (\\Seen)")
    reply = await a.cmd(b"FETCH 1:3 (FLAGS)")  # Client asserts: no EXPUNGE during FETCH
    assert len(a.view.uids) == 3
    reply = await a.cmd(b"NOOP")
    assert reply[0] == b"* 1 EXPUNGE\r\n"
    assert len(a.view.uids) == 2
    await a.c.close()
    await b.c.close()


async def test_bye_when_the_selected_mailbox_is_gone(imap: ImapHarness, short_log: None) -> None:
    acct = await imap.account()
    await acct.create_mailbox("Work")
    a = Client(await imap.raw_login(), "a")
    b = Client(await imap.raw_login(), "b")
    await a.cmd(b"SELECT Work")
    await b.cmd(b"DELETE Work")
    await imap.deliver(*[message(i) for i in range(1, 9)])
    await a.c.send(b"x NOOP\r\n")
    line = await a.c.line()
    assert line == b"* BYE Selected mailbox no longer exists\r\n"
    assert await a.c.line() == b""  # closed
    await b.c.close()
