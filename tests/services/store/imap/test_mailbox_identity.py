"""A selected mailbox deleted or replaced by another session (issue 11): mailbox ids and
UIDVALIDITY are never reused in an account, so the session is told `* BYE` and the
connection closes (as Dovecot does); it is never shown the new mailbox's mail under the
old mailbox's UIDs and UIDVALIDITY. A renamed mailbox keeps its id and UIDVALIDITY."""

from __future__ import annotations

import re

from tests.services.store.imap.conftest import ImapHarness, Line, message


async def _rest(c: Line, tag: bytes = b"A2") -> list[bytes]:
    """Every line until the server closes the connection (or answers ``tag``)."""
    out = []
    while ln := await c.line():
        out.append(ln)
        if ln.startswith(tag + b" "):
            break
    return out


async def _uidvalidity(c: Line, tag: bytes, name: bytes) -> tuple[list[bytes], int]:
    reply = await c.cmd(tag + b" SELECT " + name)
    assert reply[-1].startswith(tag + b" OK"), reply
    (found,) = [m for ln in reply if (m := re.search(rb"UIDVALIDITY (\d+)", ln))]
    return reply, int(found.group(1))


async def test_session_of_deleted_and_recreated_newest_mailbox_gets_bye(
    imap: ImapHarness,
) -> None:
    acct = await imap.account()
    # the newest mailbox of the account: its id was the one a new mailbox got again
    old = await acct.create_mailbox("Projects")
    for n in range(2):
        await acct.append(old.id, message(n))
    a = await imap.raw_login()
    b = await imap.raw_login()
    reply, old_validity = await _uidvalidity(a, b"A1", b"Projects")
    assert b"* 2 EXISTS\r\n" in reply
    assert (await b.cmd(b"B1 DELETE Projects"))[-1].startswith(b"B1 OK")
    assert (await b.cmd(b"B2 CREATE Other"))[-1].startswith(b"B2 OK")
    for n in range(4):
        msg = message(10 + n)
        await b.send(b"B3%d APPEND Other {%d+}\r\n%s\r\n" % (n, len(msg), msg))
        assert (await b.until_tagged(b"B3%d" % n))[-1].startswith(b"B3%d OK" % n)
    # the old code reused the id: "* 4 EXISTS", then the new mailbox's mail under the
    # old UIDVALIDITY
    await a.send(b"A2 NOOP\r\n")
    lines = await _rest(a)
    assert lines == [b"* BYE Selected mailbox no longer exists\r\n"], lines
    new = await acct.mailbox("Other")
    assert new.id != old.id
    assert new.uidvalidity != old_validity
    await a.close()
    await b.close()


async def test_session_of_replaced_mailbox_same_name_gets_bye(imap: ImapHarness) -> None:
    acct = await imap.account()
    box = await acct.create_mailbox("Lists")
    await acct.append(box.id, message(1))
    a = await imap.raw_login()
    await _uidvalidity(a, b"A1", b"Lists")
    await acct.delete_mailbox("Lists")
    again = await acct.create_mailbox("Lists")
    await acct.append(again.id, message(2))
    await acct.append(again.id, message(3))
    await a.send(b"A2 UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    lines = await _rest(a)
    assert lines[-1] == b"* BYE Selected mailbox no longer exists\r\n", lines
    assert not any(b"message 2" in ln or b"message 3" in ln for ln in lines), lines
    assert not any(b"EXISTS" in ln for ln in lines), lines
    assert again.id != box.id and again.uidvalidity != box.uidvalidity
    await a.close()


async def test_renamed_selected_mailbox_keeps_id_uidvalidity_and_session(
    imap: ImapHarness,
) -> None:
    acct = await imap.account()
    box = await acct.create_mailbox("Old")
    await acct.append(box.id, message(1))
    a = await imap.raw_login()
    _, validity = await _uidvalidity(a, b"A1", b"Old")
    await acct.rename_mailbox("Old", "New")
    after = await acct.mailbox("New")
    assert (after.id, after.uidvalidity) == (box.id, box.uidvalidity)
    await acct.append(box.id, message(2))
    reply = await a.cmd(b"A2 NOOP")
    assert reply[-1].startswith(b"A2 OK"), reply
    assert b"* 2 EXISTS\r\n" in reply
    _, again = await _uidvalidity(a, b"A3", b"New")
    assert again == validity
    await a.close()
