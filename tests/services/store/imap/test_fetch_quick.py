"""FETCH of view items (UID, FLAGS, MODSEQ) and cached renderings (ENVELOPE, INTERNALDATE,
RFC822.SIZE, BODYSTRUCTURE) in one pass (handlers/fetch.py ``_quick``, issue 20): the same
bytes as the general per-message path, each distinct flag set rendered once, one cache
look-up per item and message."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.store.imap import responses
from services.store.imap import session as session_module
from services.store.imap.handlers import fetch as fetch_handler
from services.store.imap.runtime import RenderCache
from services.store.imap.selected import Selected
from services.store.listener import Connection
from tests.services.store.imap.conftest import ImapHarness, message

ITEMS = b"(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"
HEADER = b" BODY[HEADER]"  # not a cached rendering: the per-message path


async def test_flag_sync_renders_each_flag_set_once(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await imap.deliver(*[message(i) for i in range(1, 31)])
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")  # claims \Recent for all 30
    await c.cmd(b"f STORE 1:10 +FLAGS.SILENT (\\Seen)")
    await c.cmd(b"k STORE 11:15 +FLAGS.SILENT ($Work \\Flagged)")
    rendered: list[list[str]] = []
    real = responses.flag_list

    def counting(flags: Any) -> bytes:
        flags = list(flags)
        rendered.append(flags)
        return real(flags)

    monkeypatch.setattr(responses, "flag_list", counting)
    got = await c.cmd(b"a UID FETCH 1:* (UID FLAGS)")
    want = (
        [b"* %d FETCH (UID %d FLAGS (\\Recent \\Seen))\r\n" % (i, i) for i in range(1, 11)]
        + [
            b"* %d FETCH (UID %d FLAGS ($Work \\Flagged \\Recent))\r\n" % (i, i)
            for i in range(11, 16)
        ]
        + [b"* %d FETCH (UID %d FLAGS (\\Recent))\r\n" % (i, i) for i in range(16, 31)]
    )
    assert got[:-1] == want
    assert got[-1].startswith(b"a OK")
    assert len(rendered) == 3  # one per distinct flag set, not one per message
    again = await c.cmd(b"b UID FETCH 1:* (FLAGS)")
    assert again[:-1] == want
    assert len(rendered) == 3
    # a change of flags shows the new set (and renders it once)
    await c.cmd(b"u STORE 16 -FLAGS.SILENT (\\Recent)")
    await c.cmd(b"v STORE 16 +FLAGS.SILENT (\\Answered)")
    one = await c.cmd(b"w FETCH 16 (FLAGS)")
    assert one[0] == b"* 16 FETCH (FLAGS (\\Answered \\Recent))\r\n"
    await c.close()


async def test_list_page_matches_the_general_path_with_one_lookup_each(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webmail list page's items, cold and then cached, give the bytes the per-message
    path gives for them (the same items plus a header section, which takes that path),
    and a cached page costs one render-cache look-up per item and message."""
    await imap.deliver(*[message(i) for i in range(1, 26)])
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    await c.cmd(b"f STORE 3 +FLAGS.SILENT (\\Flagged)")
    cold = await c.cmd(b"a UID FETCH 1:25 " + ITEMS)
    gets: list[Any] = []
    real_get = RenderCache.get

    def counting(self: RenderCache, key: Any) -> bytes | None:
        gets.append(key)
        return real_get(self, key)

    monkeypatch.setattr(RenderCache, "get", counting)
    warm = await c.cmd(b"b UID FETCH 1:25 " + ITEMS)
    assert len(gets) == 25 * 3  # RFC822.SIZE, INTERNALDATE, ENVELOPE of each message
    assert cold[:-1] == warm[:-1]
    assert len(warm) == 26
    general = await c.cmd(
        b"c UID FETCH 1:25 " + ITEMS[:-1] + HEADER.replace(b"BODY", b"BODY.PEEK") + b")"
    )
    firsts = [ln for ln in general if ln.startswith(b"* ")]
    assert len(firsts) == 25
    for quick, slow in zip(warm[:-1], firsts, strict=True):
        head, _, size = slow.rpartition(HEADER + b" {")
        assert size.endswith(b"}\r\n")
        assert quick == head + b")\r\n"
    assert b"FLAGS (\\Flagged \\Recent)" in warm[2]
    await c.close()


async def test_header_fields_of_a_list_page_in_one_pass(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list page's BODY.PEEK[HEADER.FIELDS (...)] (W4b's FETCH-HEADERS) takes the one
    pass too, cold (files read once, then kept) and cached (no message file opened): the
    same bytes as the per-message path gives for the same items."""
    await imap.deliver(*[message(i) for i in range(1, 13)])
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    per_message = [0]
    real_one = fetch_handler._one

    async def counting(*args: Any) -> list[bytes]:
        per_message[0] += 1
        return await real_one(*args)

    monkeypatch.setattr(fetch_handler, "_one", counting)
    fields = b"BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]"
    cold = await c.cmd(b"a UID FETCH 3:12 (UID " + fields + b")")
    warm = await c.cmd(b"b UID FETCH 3:12 (UID " + fields + b")")
    assert per_message[0] == 0  # neither went message by message
    assert cold[-1].startswith(b"a OK") and warm[-1].startswith(b"b OK")
    assert cold[:-1] == warm[:-1]
    quick = b"".join(warm[:-1])
    assert quick.count(b"BODY[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)] {") == 10
    assert b"Subject: message 12\r\n" in quick
    # the general path (an item outside the one pass added) gives the same FETCH data
    general = await c.cmd(
        b"c UID FETCH 3:12 (UID " + fields + HEADER.replace(b"BODY", b"BODY.PEEK") + b")"
    )
    assert per_message[0] == 10
    slow = b"".join(general[:-1])
    without = bytearray()  # each response's BODY[HEADER] literal cut out
    at = 0
    for m in re.finditer(rb" BODY\[HEADER\] \{(\d+)\}\r\n", slow):
        if m.start() < at:
            continue  # inside a literal
        without += slow[at : m.start()]
        at = m.end() + int(m.group(1))
    without += slow[at:]
    assert bytes(without) == quick
    await c.close()


async def test_flag_sync_is_one_line_template_per_command(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FETCH of UID/FLAGS/MODSEQ only (a client's flag sync) formats one line template
    per message with the flags rendered in one loop (Selected.flag_lists): no per-message
    flag_list call, and the same lines as the item-by-item pass gives (an INTERNALDATE
    added takes that pass; cut out again here)."""
    await imap.deliver(*[message(i) for i in range(1, 31)])
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    await c.cmd(b"f STORE 2:9 +FLAGS.SILENT (\\Seen)")
    await c.cmd(b"k STORE 4 +FLAGS.SILENT ($Todo)")
    calls = [0]
    real = Selected.flag_list

    def counting(self: Selected, s: Any, i: int) -> bytes:
        calls[0] += 1
        return real(self, s, i)

    monkeypatch.setattr(Selected, "flag_list", counting)
    for cmd in (b"FETCH 1:30 (FLAGS UID MODSEQ)", b"UID FETCH 1:* (MODSEQ FLAGS)"):
        calls[0] = 0
        quick = await c.cmd(b"a " + cmd)
        assert calls[0] == 0
        general = await c.cmd(b"b " + cmd[:-1] + b" INTERNALDATE)")
        assert calls[0] == 30  # the other pass: one call per message
        assert quick[-1].startswith(b"a OK")
        lines = [ln for ln in quick if b" FETCH (" in ln]  # (CONDSTORE's OK first)
        assert len(lines) == 30
        cut = [re.sub(rb' INTERNALDATE "[^"]*"', b"", ln) for ln in general if b" FETCH (" in ln]
        assert lines == cut
    assert re.fullmatch(
        rb"\* 4 FETCH \(UID 4 MODSEQ \(\d+\) FLAGS \(\$Todo \\Recent \\Seen\)\)\r\n", lines[3]
    )
    await c.close()


async def test_a_large_flag_sync_goes_out_chunk_by_chunk(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-template flag sync still hands its lines to the socket chunk by chunk
    once they pass the flush size (a 100,000-message mailbox is not held whole)."""
    await imap.deliver(*[message(i) for i in range(1, 31)])
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    monkeypatch.setattr(fetch_handler, "CHUNK", 10)
    monkeypatch.setattr(session_module, "FLUSH_AT", 1)  # every chunk is "large"
    writes: list[bytes] = []
    real_write = Connection.write

    def write(self: Connection, data: bytes | bytearray) -> None:
        writes.append(bytes(data))
        real_write(self, data)

    monkeypatch.setattr(Connection, "write", write)
    got = await c.cmd(b"a FETCH 1:30 (FLAGS)")
    assert got[-1].startswith(b"a OK") and len(got) == 31
    assert [w.count(b" FETCH (") for w in writes] == [10, 10, 10, 0]
