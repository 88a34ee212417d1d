"""UTF8=ACCEPT (RFC 6855) over a real socket: ENABLE, UTF-8 mailbox names and quoted
strings, APPEND of UTF-8 headers with the UTF8 (literal8) form, SEARCH without CHARSET,
and what a client that did not enable it gets (§3, §4, §7: modified UTF-7 names, no UTF8
APPEND, RFC 6857-style downgraded ENVELOPE)."""

from __future__ import annotations

import base64

from services.store.imap import downgrade
from tests.services.store.imap.conftest import ImapHarness, Line

EAI = (
    "From: Jörg Müller <jörg@bücher.example>\r\n"
    "To: Ann <ann@example.com>\r\n"
    "Subject: Größe – 大きさ\r\n"
    "Message-ID: <eai1@example.com>\r\n"
    "Date: Mon, 4 Mar 2024 10:00:00 +0000\r\n"
    "\r\n"
    "Grüße\r\n"
).encode()


async def _enabled(imap: ImapHarness) -> Line:
    c = await imap.raw_login()
    reply = await c.cmd(b"e ENABLE UTF8=ACCEPT")
    assert reply == [b"* ENABLED UTF8=ACCEPT\r\n", b"e OK ENABLE completed\r\n"]
    return c


async def _append_utf8(c: Line, tag: bytes, box: bytes, data: bytes) -> list[bytes]:
    await c.send(b"%s APPEND %s UTF8 (~{%d}\r\n" % (tag, box, len(data)))
    cont = await c.line()
    if not cont.startswith(b"+ "):
        return [cont]
    await c.send(data + b")\r\n")
    return await c.until_tagged(tag)


async def test_advertised_and_enabled_once(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    caps = (await c.cmd(b"k CAPABILITY"))[0]
    assert b" UTF8=ACCEPT" in caps
    reply = await c.cmd(b"e ENABLE utf8=accept")
    assert reply[0] == b"* ENABLED UTF8=ACCEPT\r\n"
    # RFC 5161 §3.1: only what is newly enabled
    assert (await c.cmd(b"e2 ENABLE UTF8=ACCEPT"))[0] == b"* ENABLED\r\n"
    await c.close()


async def test_utf8_mailbox_names_and_the_legacy_view(imap: ImapHarness) -> None:
    c = await _enabled(imap)
    name = "Größe/日本".encode()
    assert (await c.cmd(b'c CREATE "' + name + b'"'))[-1].startswith(b"c OK")
    listing = await c.cmd(b'l LIST "" "Gr*"')
    assert b'* LIST (\\HasChildren) "/" "Gr\xc3\xb6\xc3\x9fe"\r\n' in listing
    assert b'* LIST (\\HasNoChildren) "/" "' + name + b'"\r\n' in listing
    st = await c.cmd(b'st STATUS "' + name + b'" (MESSAGES)')
    assert st[0] == b'* STATUS "' + name + b'" (MESSAGES 0)\r\n'
    assert (await c.cmd(b'sel SELECT "' + name + b'"'))[-1].startswith(b"sel OK")
    # a session that did not enable it sees and uses modified UTF-7 (RFC 6855 §3)
    old = await imap.raw_login()
    legacy = await old.cmd(b'l LIST "" "Gr*"')
    assert b'* LIST (\\HasNoChildren) "/" Gr&APYA3w-e/&ZeVnLA-\r\n' in legacy
    assert all(b"\xc3" not in ln for ln in legacy)
    assert (await old.cmd(b"s SELECT Gr&APYA3w-e/&ZeVnLA-"))[-1].startswith(b"s OK")
    await old.close()
    await c.close()


async def test_append_utf8_headers_and_fetch_both_ways(imap: ImapHarness) -> None:
    c = await _enabled(imap)
    reply = await _append_utf8(c, b"a", b"INBOX", EAI)
    assert reply[-1].startswith(b"a OK [APPENDUID "), reply
    assert (await c.cmd(b"s SELECT INBOX"))[-1].startswith(b"s OK")
    env = b"".join(await c.cmd(b"f FETCH 1 (ENVELOPE BODY.PEEK[])"))
    # UTF-8 as it is, in quoted strings (RFC 6855 §3)
    assert '"Größe – 大きさ"'.encode() in env
    assert '("Jörg Müller" NIL "jörg" "bücher.example")'.encode() in env
    assert EAI in env  # the octets stored as sent
    # SEARCH takes UTF-8 strings without CHARSET once enabled; CHARSET itself is BAD
    found = await c.cmd('q SEARCH SUBJECT "größe"'.encode())
    assert found[0] == b"* SEARCH 1\r\n"
    bad = await c.cmd(b"b SEARCH CHARSET UTF-8 ALL")
    assert bad[-1].startswith(b"b BAD"), bad

    # a client that did not enable UTF8=ACCEPT gets an ENVELOPE in 7-bit (RFC 6855 §7)
    old = await imap.raw_login()
    await old.cmd(b"s EXAMINE INBOX")
    env_old = b"".join(await old.cmd(b"f FETCH 1 ENVELOPE"))
    assert env_old.isascii(), env_old
    subject = "=?UTF-8?B?" + base64.b64encode("Größe – 大きさ".encode()).decode() + "?="
    assert f'"{subject}"'.encode() in env_old
    # the non-ASCII local part: an empty group named with the encoded address (RFC 6857)
    label = downgrade.encoded_words("Jörg Müller <jörg@bücher.example>")
    assert f'((NIL NIL "{label}" NIL)(NIL NIL NIL NIL))'.encode() in env_old
    assert b'("Ann" NIL "ann" "example.com")' in env_old
    await old.close()
    await c.close()


async def test_utf8_append_refused_before_enable(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    reply = await _append_utf8(c, b"a", b"INBOX", EAI)
    # RFC 6855 §4: NO, and nothing stored
    assert reply[-1].startswith(b"a NO"), reply
    st = await c.cmd(b"s STATUS INBOX (MESSAGES)")
    assert st[0] == b"* STATUS INBOX (MESSAGES 0)\r\n"
    await c.close()


async def test_utf8_in_a_multiappend(imap: ImapHarness) -> None:
    c = await _enabled(imap)
    plain = b"Subject: plain\r\n\r\nx\r\n"
    await c.send(
        b"m APPEND INBOX {%d+}\r\n%s UTF8 (~{%d+}\r\n%s)\r\n" % (len(plain), plain, len(EAI), EAI)
    )
    reply = await c.until_tagged(b"m")
    assert reply[-1].startswith(b"m OK [APPENDUID "), reply
    assert reply[-1].split(b" ")[4] == b"1:2]"
    await c.close()


async def test_ascii_envelope_unchanged_by_the_downgrade(imap: ImapHarness) -> None:
    await imap.deliver(b"From: A <a@example.com>\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n\r\nx\r\n")
    old = await imap.raw_login()
    await old.cmd(b"s EXAMINE INBOX")
    env = b"".join(await old.cmd(b"f FETCH 1 ENVELOPE"))
    assert b'"=?UTF-8?Q?caf=C3=A9?=" (("A" NIL "a" "example.com"))' in env
    await old.close()


def test_downgrade_of_a_domain_uses_a_labels() -> None:
    from mailcore.message import Address, Envelope

    e = Envelope(to=[Address("Bo", None, "bo", "bücher.example")])
    out = downgrade.envelope(e)
    assert out.to == [Address("Bo", None, "bo", "xn--bcher-kva.example")]
    assert downgrade.envelope(Envelope(subject="plain")).subject == "plain"
