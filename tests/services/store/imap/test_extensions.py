"""CONDSTORE / QRESYNC resynchronisation (RFC 7162), QUOTA with limits (RFC 9208), and a
selected mailbox deleted by another session."""

from __future__ import annotations

import re

from tests.services.store.imap.conftest import ALICE, Factory, ImapHarness, message


def _code(lines: list[bytes], name: bytes) -> int:
    for ln in lines:
        if m := re.search(rb"\[" + name + rb" (\d+)\]", ln):
            return int(m.group(1))
    raise AssertionError(f"no {name!r} in {lines!r}")


async def test_qresync_reports_vanished_and_changed(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i) for i in range(1, 6)])
    a = await imap.raw_login()
    assert (await a.cmd(b"e ENABLE QRESYNC"))[0] == b"* ENABLED QRESYNC CONDSTORE\r\n"
    sel = await a.cmd(b"s SELECT INBOX")
    validity, modseq = _code(sel, b"UIDVALIDITY"), _code(sel, b"HIGHESTMODSEQ")
    await a.cmd(b"u UNSELECT")
    # another session changes flags on 2 and expunges 4 while we are away
    b = await imap.raw_login()
    await b.cmd(b"s SELECT INBOX")
    await b.cmd(b"f UID STORE 2 +FLAGS (\\Answered)")
    await b.cmd(b"g UID STORE 4 +FLAGS (\\Deleted)")
    await b.cmd(b"h EXPUNGE")
    sel2 = await a.cmd(b"q SELECT INBOX (QRESYNC (%d %d 1:5))" % (validity, modseq))
    assert b"* VANISHED (EARLIER) 4\r\n" in sel2, sel2
    fetches = [ln for ln in sel2 if b"FETCH" in ln]
    assert len(fetches) == 1 and b"UID 2 " in fetches[0] and b"\\Answered" in fetches[0]
    assert _code(sel2, b"HIGHESTMODSEQ") > modseq
    # while selected, another session's expunge arrives as VANISHED, not EXPUNGE
    await b.cmd(b"i UID STORE 5 +FLAGS (\\Deleted)")
    await b.cmd(b"j EXPUNGE")
    noop = await a.cmd(b"n NOOP")
    assert b"* VANISHED 5\r\n" in noop and not any(b"EXPUNGE" in ln for ln in noop)
    # a stale UIDVALIDITY gives a plain select
    sel3 = await a.cmd(b"r SELECT INBOX (QRESYNC (%d %d))" % (validity + 1, modseq))
    assert b"* OK [CLOSED] Previous mailbox closed\r\n" in sel3
    assert not any(b"VANISHED" in ln for ln in sel3)
    await a.close()
    await b.close()


async def test_condstore_unchangedsince(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2))
    a = await imap.raw_login()
    await a.cmd(b"s SELECT INBOX (CONDSTORE)")
    reply = await a.cmd(b"f FETCH 1:2 (MODSEQ)")
    m1 = int(re.search(rb"MODSEQ \((\d+)\)", reply[0]).group(1))  # type: ignore[union-attr]
    ok = await a.cmd(b"t STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % m1)
    assert ok[-1].startswith(b"t OK STORE completed")
    # the same condition again fails: the modseq moved on
    again = await a.cmd(b"u STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % m1)
    assert again[-1].startswith(b"u OK [MODIFIED 1]")
    flags = await a.cmd(b"v FETCH 1 FLAGS")
    assert b"\\Flagged" not in flags[0]
    await a.close()


async def test_quota_limits_and_overquota(make_imap: Factory) -> None:
    h = await make_imap(user=False)
    await h.add_user(ALICE, quota_messages=2, quota_bytes=10 * 1024)
    await h.deliver(message(1))
    a = await h.raw_login()
    reply = await a.cmd(b"q GETQUOTAROOT INBOX")
    assert reply[0] == b'* QUOTAROOT INBOX ""\r\n'
    assert reply[1] == b'* QUOTA "" (STORAGE 1 10 MESSAGE 1 2)\r\n'
    body = message(2)
    await a.send(b"p APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
    assert (await a.until_tagged(b"p"))[-1].startswith(b"p OK")
    await a.send(b"x APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
    assert (await a.until_tagged(b"x"))[-1].startswith(b"x NO [OVERQUOTA]")
    await a.cmd(b"s SELECT INBOX")
    assert (await a.cmd(b"c COPY 1 Archive"))[-1].startswith(b"c NO [OVERQUOTA]")
    await a.close()


async def test_selected_mailbox_deleted_by_another_session(imap: ImapHarness) -> None:
    a = await imap.raw_login()
    b = await imap.raw_login()
    await a.cmd(b"c CREATE Doomed")
    await a.cmd(b"s SELECT Doomed")
    await b.cmd(b"d DELETE Doomed")
    await a.send(b"n NOOP\r\n")
    assert (await a.line()).startswith(b"* BYE")
    assert await a.line() == b""
    await a.close()
    await b.close()


BINARY_MSG = (
    b"From: a@example.net\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nbar\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
    b"\r\nAAECAwBh\r\n"
    b"--b\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode\r\n"
    b"\r\nbegin 644 x\r\n"
    b"--b--\r\n"
)


async def test_binary_fetch_and_literal8_append(imap: ImapHarness) -> None:
    a = await imap.raw_login()
    # RFC 3516 §4.4: APPEND with literal8 (NUL octets allowed)
    await a.send(b"p APPEND INBOX ~{%d}\r\n" % len(BINARY_MSG))
    assert (await a.line()).startswith(b"+ ")
    await a.send(BINARY_MSG + b"\r\n")
    assert (await a.until_tagged(b"p"))[-1].startswith(b"p OK [APPENDUID")
    await a.cmd(b"s SELECT INBOX")
    reply = await a.cmd(b"f FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[2])")
    assert reply[0] == b"* 1 FETCH (BINARY.SIZE[1] 9 BINARY[1] {9}\r\n"
    assert reply[1] == "café bar".encode() + b" BINARY.SIZE[2] 6)\r\n"
    await a.send(b"g FETCH 1 BINARY.PEEK[2]<1.4>\r\n")
    head = await a.line()
    assert head == b"* 1 FETCH (BINARY[2]<1> ~{4}\r\n"  # NUL inside: literal8
    assert await a.reader.readexactly(4) == b"\x01\x02\x03\x00"
    assert (await a.line()) == b")\r\n"
    assert (await a.line()).startswith(b"g OK")
    reply = await a.cmd(b"u FETCH 1 BINARY.PEEK[3]")
    assert reply[-1].startswith(b"u NO [UNKNOWN-CTE]")
    # BINARY (not PEEK) sets \Seen like BODY[]
    reply = await a.cmd(b"v FETCH 1 BINARY[1]")
    assert b"\\Seen" in reply[-2]
    await a.close()


async def test_searchres_in_imap4rev1(imap: ImapHarness) -> None:
    await imap.deliver(*[message(i) for i in range(1, 6)])
    a = await imap.raw_login()
    await a.cmd(b"s SELECT INBOX")
    reply = await a.cmd(b"t SEARCH RETURN (SAVE MIN MAX) 2:4")
    assert reply[0] == b'* ESEARCH (TAG "t") MIN 2 MAX 4\r\n'
    reply = await a.cmd(b"f FETCH $ UID")
    assert reply[:-1] == [b"* 2 FETCH (UID 2)\r\n", b"* 4 FETCH (UID 4)\r\n"]
    await a.cmd(b"d STORE $ +FLAGS.SILENT (\\Deleted)")
    reply = await a.cmd(b"e UID EXPUNGE $")
    assert reply[:-1] == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n", b"* 3 RECENT\r\n"]
    reply = await a.cmd(b"g SEARCH $")
    assert reply[0] == b"* SEARCH\r\n"  # the saved messages are gone
    await a.close()


async def test_rev2_session_sees_no_recent(imap: ImapHarness) -> None:
    a = await imap.raw_login()
    await a.cmd(b"e ENABLE IMAP4rev2")
    await a.cmd(b"s SELECT INBOX")
    await imap.deliver(message(1))
    reply = await a.cmd(b"n NOOP")
    assert reply[:-1] == [b"* 1 EXISTS\r\n"]
    reply = await a.cmd(b"f FETCH 1 FLAGS")
    assert reply[0] == b"* 1 FETCH (FLAGS ())\r\n"
    # an IMAP4rev1 session still gets \Recent for it
    b = await imap.raw_login()
    sel = await b.cmd(b"s SELECT INBOX")
    assert b"* 1 RECENT\r\n" in sel
    await a.close()
    await b.close()
