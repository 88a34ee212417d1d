"""MULTIAPPEND (RFC 3502) over a real socket: the RFC's example, one APPENDUID with the
UID set (RFC 4315 §3), all or none (quota, size and a missing mailbox refuse the whole
command with nothing stored), per-message flags and dates, and the session in step after
a refusal before a continuation."""

from __future__ import annotations

from tests.services.store.imap.conftest import ALICE, Factory, ImapHarness, Line, message

# RFC 3502 §6.3.11 example, the two messages
MSG1 = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.example.net\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example.COM>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)
MSG2 = (
    b"Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\n"
    b"From: Joe Mooch <mooch@OWaTaGu.example.net>\r\n"
    b"Subject: Re: afternoon meeting\r\n"
    b"To: foobar@blurdybloop.example.com\r\n"
    b"Message-Id: <a0434793874930@OWaTaGu.example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
    b"3:30 is fine with me.\r\n"
)


async def _multiappend(
    c: Line, tag: bytes, head: bytes, parts: list[tuple[bytes, bytes]]
) -> list[bytes]:
    """Send ``tag APPEND head`` then each (options, message) with a synchronizing literal,
    waiting for every continuation; the replies up to the tagged one."""
    line = tag + b" APPEND " + head
    for i, (opts, data) in enumerate(parts):
        line += b" " + opts + (b" " if opts else b"") + b"{%d}" % len(data)
        await c.send(line + b"\r\n")
        cont = await c.line()
        if not cont.startswith(b"+ "):
            return [cont]
        line = data
        if i == len(parts) - 1:
            await c.send(line + b"\r\n")
    return await c.until_tagged(tag)


async def test_rfc3502_example(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    c = await imap.raw_login()
    assert (await c.cmd(b"c CREATE saved-messages"))[-1].startswith(b"c OK")
    st = await c.cmd(b"s STATUS saved-messages (UIDVALIDITY)")
    uidvalidity = st[0].split(b"UIDVALIDITY ")[1].split(b")")[0]
    reply = await _multiappend(
        c,
        b"A003",
        b"saved-messages",
        [(b"(\\Seen)", MSG1), (b'(\\Seen) "07-Feb-1994 22:43:04 -0800"', MSG2)],
    )
    assert reply[-1] == b"A003 OK [APPENDUID %s 1:2] APPEND completed\r\n" % uidvalidity
    assert b"CAPABILITY" in (await c.cmd(b"k CAPABILITY"))[0]
    assert b" MULTIAPPEND" in (await c.cmd(b"k2 CAPABILITY"))[0]
    assert (await c.cmd(b"e EXAMINE saved-messages"))[-1].startswith(b"e OK")
    got = await c.cmd(b"f UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    text = b"".join(got)
    # EXAMINE reports \Recent without claiming it (RFC 3501 §6.3.2)
    assert b"UID 1 FLAGS (\\Recent \\Seen)" in text
    assert b"UID 2 FLAGS (\\Recent \\Seen)" in text
    assert b'INTERNALDATE "08-Feb-1994 06:43:04 +0000"' in text  # the same instant
    assert MSG1 in text and MSG2 in text
    assert text.index(MSG1) < text.index(MSG2)  # stored in the order sent
    await c.close()


async def test_uid_set_with_gaps_and_non_synchronizing_literals(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    # four single appends, then expunge two: the next UIDs follow the highest ever given
    for n in range(4):
        data = message(n)
        await c.send(b"a%d APPEND INBOX {%d+}\r\n%s\r\n" % (n, len(data), data))
        assert (await c.until_tagged(b"a%d" % n))[-1].startswith(b"a%d OK" % n)
    assert (await c.cmd(b"s SELECT INBOX"))[-1].startswith(b"s OK")
    await c.cmd(b"t UID STORE 2:3 +FLAGS.SILENT (\\Deleted)")
    await c.cmd(b"x EXPUNGE")
    m1, m2, m3 = message(10), message(11), message(12)
    # RFC 7888 LITERAL+: the whole MULTIAPPEND in one go
    await c.send(
        b"m APPEND INBOX {%d+}\r\n%s (\\Flagged) {%d+}\r\n%s ($Work) {%d+}\r\n%s\r\n"
        % (len(m1), m1, len(m2), m2, len(m3), m3)
    )
    reply = await c.until_tagged(b"m")
    assert reply[-1].startswith(b"m OK [APPENDUID "), reply
    assert reply[-1].split(b" ")[4] == b"5:7]"
    assert b"* 5 EXISTS\r\n" in reply  # the selected mailbox learns of all three
    got = b"".join(await c.cmd(b"f UID FETCH 5:7 (FLAGS)"))
    assert b"UID 5 FLAGS (\\Recent)" in got
    assert b"UID 6 FLAGS (\\Flagged \\Recent)" in got
    assert b"UID 7 FLAGS ($Work \\Recent)" in got
    await c.close()


async def test_quota_refuses_the_whole_multiappend(make_imap: Factory) -> None:
    h = await make_imap(user=False)
    await h.add_user(ALICE, quota_messages=2)
    c = await h.raw_login()
    # three messages over a two-message quota: the third literal is refused before its
    # continuation, and the two sent before it are not stored (RFC 3502: all or none)
    reply = await _multiappend(
        c, b"q", b"INBOX", [(b"", message(1)), (b"", message(2)), (b"", message(3))]
    )
    assert reply == [b"q NO [OVERQUOTA] Quota exceeded\r\n"]
    assert (await c.cmd(b"n NOOP"))[-1].startswith(b"n OK")  # in step
    st = await c.cmd(b"s STATUS INBOX (MESSAGES)")
    assert st[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await c.close()


async def test_quota_checked_in_the_store_for_all_messages_together(make_imap: Factory) -> None:
    h = await make_imap(user=False)
    await h.add_user(ALICE, quota_messages=2)
    c = await h.raw_login()
    m1, m2, m3 = message(1), message(2), message(3)
    # non-synchronizing literals get no check before the data: the store's one
    # transaction refuses them all
    await c.send(
        b"q APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s {%d+}\r\n%s\r\n"
        % (len(m1), m1, len(m2), m2, len(m3), m3)
    )
    reply = await c.until_tagged(b"q")
    assert reply[-1].startswith(b"q NO [OVERQUOTA]"), reply
    st = await c.cmd(b"s STATUS INBOX (MESSAGES)")
    assert st[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await c.close()


async def test_one_message_too_large_refuses_all(make_imap: Factory) -> None:
    h = await make_imap(max_message_size=2000)
    c = await h.raw_login()
    big = message(2, body=b"x" * 3000 + b"\r\n")
    reply = await _multiappend(c, b"t", b"INBOX", [(b"", message(1)), (b"", big)])
    assert reply == [b"t NO [TOOBIG] Message too large\r\n"]
    assert (await c.cmd(b"n NOOP"))[-1].startswith(b"n OK")
    st = await c.cmd(b"s STATUS INBOX (MESSAGES)")
    assert st[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await c.close()


async def test_empty_message_among_several_refuses_all(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    m1 = message(1)
    await c.send(b"e APPEND INBOX {%d+}\r\n%s {0+}\r\n\r\n" % (len(m1), m1))
    reply = await c.until_tagged(b"e")
    assert reply[-1].startswith(b"e NO [CANNOT]"), reply
    st = await c.cmd(b"s STATUS INBOX (MESSAGES)")
    assert st[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await c.close()


async def test_missing_mailbox_trycreate(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    m1, m2 = message(1), message(2)
    await c.send(b"t APPEND nosuch {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(m1), m1, len(m2), m2))
    reply = await c.until_tagged(b"t")
    assert reply[-1].startswith(b"t NO [TRYCREATE]"), reply
    await c.close()


async def test_trailing_space_without_message_is_bad(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    m1 = message(1)
    await c.send(b"b APPEND INBOX {%d+}\r\n%s \r\n" % (len(m1), m1))
    reply = await c.until_tagged(b"b")
    assert reply[-1].startswith(b"b BAD"), reply
    st = await c.cmd(b"s STATUS INBOX (MESSAGES)")
    assert st[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await c.close()


async def test_all_messages_together_are_capped(make_imap: Factory) -> None:
    # each message fits the 1,000-octet limit; the fifth brings the APPEND past 4 × it
    h = await make_imap(max_message_size=1000)
    c = await h.raw_login()
    parts = [(b"", message(n, body=b"z" * 800 + b"\r\n")) for n in range(5)]
    assert all(len(p) <= 1000 for _, p in parts)
    reply = await _multiappend(c, b"t", b"INBOX", parts)
    assert reply == [b"t NO [TOOBIG] Message too large\r\n"]
    assert (await c.cmd(b"n NOOP"))[-1].startswith(b"n OK")
    st = await c.cmd(b"s STATUS INBOX (MESSAGES)")
    assert st[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await c.close()


async def test_imapclient_multiappend(imap: ImapHarness) -> None:
    from imapclient import IMAPClient

    from tests.services.store.imap.conftest import HOST, PASSWORD

    def run() -> tuple[object, dict[int, tuple[bytes, ...]]]:
        with IMAPClient(HOST, port=imap.port, ssl=False, timeout=60) as c:
            c.login(ALICE, PASSWORD)
            assert b"MULTIAPPEND" in c.capabilities()
            # imapclient sends one APPEND with a literal per message (RFC 3502)
            reply = c.multiappend("INBOX", [message(1), {"msg": message(2), "flags": ["\\Seen"]}])
            c.select_folder("INBOX", readonly=True)
            return reply, c.get_flags(c.search("ALL"))

    reply, flags = await imap.run(run)
    typ, data = reply  # type: ignore[misc]
    assert typ == "OK" and data[0].startswith(b"[APPENDUID ") and b" 1:2] " in data[0], reply
    assert b"\\Seen" not in flags[1] and b"\\Seen" in flags[2], flags
