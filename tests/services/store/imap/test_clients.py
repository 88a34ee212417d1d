"""Real IMAP clients against the real server: imaplib, imapclient and aioimaplib."""

from __future__ import annotations

import imaplib
import ssl

import aioimaplib
import pytest
from imapclient import IMAPClient

from tests.services.store.imap.conftest import ALICE, HOST, PASSWORD, ImapHarness, message, ok


async def test_imaplib_session(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2), message(3))

    def session() -> None:
        c = imap.imaplib()
        caps = ok(*c.capability())[0].split()
        assert b"IDLE" in caps and b"UIDPLUS" in caps and b"MOVE" in caps
        typ, data = c.select("INBOX")
        assert typ == "OK" and data == [b"3"]
        typ, data = c.fetch("1:3", "(UID FLAGS RFC822.SIZE)")
        assert typ == "OK" and len(data) == 3
        assert b"UID 1 " in data[0]
        typ, data = c.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: message 2\r\n\r\n"
        typ, data = c.fetch("2", "(RFC822)")
        assert data[0][1] == message(2)
        # the non-peek fetch set \Seen
        typ, data = c.fetch("2", "(FLAGS)")
        assert b"\\Seen" in data[0]
        typ, data = c.search(None, "UNSEEN")
        assert data == [b"1 3"]
        typ, data = c.search(None, "SUBJECT", '"message 3"')
        assert data == [b"3"]
        ok(*c.store("1", "+FLAGS", "(\\Deleted)"))
        typ, data = c.expunge()
        assert data == [b"1"]
        typ, data = c.uid("SEARCH", None, "ALL")
        assert data == [b"2 3"]
        ok(*c.create("Projects/2024"))
        typ, data = c.list('""', "Projects*")
        assert data == [b'(\\HasChildren) "/" Projects', b'(\\HasNoChildren) "/" Projects/2024']
        typ, data = c.uid("COPY", "2:3", "Projects/2024")
        assert typ == "OK"
        typ, data = c.status("Projects/2024", "(MESSAGES UIDNEXT)")
        assert data == [b"Projects/2024 (MESSAGES 2 UIDNEXT 3)"]
        ok(*c.append("Projects", "(\\Flagged)", imaplib.Time2Internaldate(1700000000), message(9)))
        ok(*c.close())
        c.logout()

    await imap.run(session)


async def test_imaplib_tls_and_starttls(make_imap) -> None:  # type: ignore[no-untyped-def]
    h: ImapHarness = await make_imap(plaintext="never")

    def session() -> None:
        plain = h.imaplib(login=False)
        assert "LOGINDISABLED" in plain.capabilities and "STARTTLS" in plain.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            plain.login(ALICE, PASSWORD)
        plain.starttls(ssl_context=h.client_tls)
        assert "AUTH=PLAIN" in plain.capabilities and "LOGINDISABLED" not in plain.capabilities
        plain.login(ALICE, PASSWORD)
        plain.logout()
        implicit = h.imaplib(tls=True)
        ok(*implicit.select("INBOX"))
        implicit.logout()

    await h.run(session)


async def test_imapclient_session(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2, subject="=?utf-8?q?caf=C3=A9?="))

    def session() -> None:
        with IMAPClient(HOST, port=imap.port, ssl=False, timeout=60) as c:
            c.login(ALICE, PASSWORD)
            assert b"MOVE" in c.capabilities()
            folders = {f[2]: f[0] for f in c.list_folders()}
            assert b"\\Sent" in folders["Sent"] and b"\\HasNoChildren" in folders["INBOX"]
            assert c.find_special_folder(b"\\Trash") == "Trash"
            c.create_folder("Entwürfe")  # sent in modified UTF-7 by imapclient
            assert "Entwürfe" in {f[2] for f in c.list_folders()}
            info = c.select_folder("INBOX")
            assert info[b"EXISTS"] == 2 and info[b"UIDNEXT"] == 3
            data = c.fetch([1, 2], ["ENVELOPE", "BODYSTRUCTURE", "INTERNALDATE", "FLAGS"])
            env = data[2][b"ENVELOPE"]
            assert env.subject == b"=?utf-8?q?caf=C3=A9?="
            assert env.from_[0].mailbox == b"sender" and env.from_[0].host == b"example.net"
            assert env.from_[0].name == b"Sender"
            assert data[1][b"BODYSTRUCTURE"][0] == b"TEXT"
            assert data[1][b"INTERNALDATE"].year == 2024
            c.add_flags([1], ["$Important"])
            assert b"$Important" in c.get_flags([1])[1]
            c.move([2], "Entwürfe")
            assert c.search() == [1]
            c.select_folder("Entwürfe", readonly=True)
            assert c.search(["SUBJECT", "café"], charset="UTF-8") == [1]
            c.unselect_folder()
            st = c.folder_status("INBOX", ["MESSAGES", "UNSEEN"])
            assert st[b"MESSAGES"] == 1
            c.rename_folder("Entwürfe", "Drafts2")
            c.delete_folder("Drafts2")
            assert c.namespace().personal[0][0] == ""
            assert tuple(c.id_({"name": "test"})[0][:2]) == (b"name", b"Postern")
            c.logout()

    await imap.run(session)


async def test_imapclient_idle_sees_delivery(imap: ImapHarness) -> None:
    import asyncio
    import threading

    ready = threading.Event()
    result: list[object] = []

    def session() -> None:
        with IMAPClient(HOST, port=imap.port, ssl=False, timeout=60) as c:
            c.login(ALICE, PASSWORD)
            c.select_folder("INBOX")
            c.idle()
            ready.set()
            responses = []
            for _ in range(20):
                responses += c.idle_check(timeout=5)
                if any(r[1] == b"EXISTS" for r in responses):
                    break
            c.idle_done()
            result.extend(responses)

    task = asyncio.ensure_future(imap.run(session))
    while not ready.is_set():
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    await imap.deliver(message(1))
    await task
    assert (1, b"EXISTS") in result


async def test_aioimaplib_session(imap: ImapHarness) -> None:
    await imap.deliver(message(1), message(2))
    c = aioimaplib.IMAP4(host=HOST, port=imap.port, timeout=60)
    await c.wait_hello_from_server()
    resp = await c.login(ALICE, PASSWORD)
    assert resp.result == "OK"
    resp = await c.select("INBOX")
    assert resp.result == "OK"
    assert b"2 EXISTS" in resp.lines
    resp = await c.uid("fetch", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert resp.result == "OK"
    assert message(1) in resp.lines
    resp = await c.append(message(3), mailbox="INBOX", flags="(\\Seen)")
    assert resp.result == "OK"
    # IDLE: another append wakes us
    idle = await c.idle_start(timeout=30)
    await imap.deliver(message(4))
    pushed = await c.wait_server_push(timeout=30)
    c.idle_done()
    await idle
    assert any(b"EXISTS" in line for line in pushed), pushed
    resp = await c.uid_search("ALL")
    assert resp.lines[0] == b"1 2 3 4"
    await c.logout()


async def test_aioimaplib_over_tls(imap: ImapHarness) -> None:
    ctx: ssl.SSLContext = imap.client_tls
    c = aioimaplib.IMAP4_SSL(host=HOST, port=imap.imaps_port, ssl_context=ctx, timeout=60)
    await c.wait_hello_from_server()
    assert (await c.login(ALICE, PASSWORD)).result == "OK"
    assert (await c.select("Sent")).result == "OK"
    await c.logout()
