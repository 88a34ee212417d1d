"""Size and scale: a 25 MiB message round-trips byte-identical; a 10,000-message mailbox
selects and fetches headers without reading every message."""

from __future__ import annotations

import hashlib
import os
import time

import psutil
import pytest

from mailcore.mailstore import Delivery
from tests.services.store.imap.conftest import ALICE, Factory, ImapHarness, message


def big_message(size: int) -> bytes:
    head = (
        b"From: a@example.net\r\nTo: alice@example.com\r\nSubject: big\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    body = bytearray()
    i = 0
    while len(head) + len(body) < size:
        body += line[:-4] + b"%02d" % (i % 100) + b"\r\n"
        i += 1
    return head + bytes(body[: size - len(head)])


@pytest.mark.slow
async def test_25_mib_append_and_fetch_byte_identical(make_imap: Factory) -> None:
    h: ImapHarness = await make_imap(max_message_size=30 * 1024 * 1024)
    data = big_message(25 * 1024 * 1024)
    c = await h.raw_login()
    await c.send(b"a APPEND INBOX {%d}\r\n" % len(data))
    assert (await c.line()).startswith(b"+ ")
    await c.send(data + b"\r\n")
    reply = await c.until_tagged(b"a", timeout=120)
    assert reply[-1].startswith(b"a OK [APPENDUID "), reply
    await c.cmd(b"s SELECT INBOX")
    await c.send(b"f UID FETCH 1 (RFC822.SIZE BODY.PEEK[])\r\n")
    head = await c.line(timeout=120)
    assert head.startswith(b"* 1 FETCH (UID 1 RFC822.SIZE %d BODY[] {%d}" % (len(data), len(data)))
    got = await c.reader.readexactly(len(data))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert (await c.line()) == b")\r\n"
    assert (await c.line()).startswith(b"f OK")
    await c.close()


async def _fill(h: ImapHarness, n: int) -> None:
    """n messages of ~8 KiB through the delivery path (group commits of 500)."""
    account_id = h.users[ALICE].account_id
    body = (b"y" * 78 + b"\r\n") * 100
    for start in range(0, n, 500):
        batch = [
            Delivery(f"k{i}", account_id, "inbox", message(i, body=body), internal_date=1.7e9)
            for i in range(start, min(n, start + 500))
        ]
        results = await h.store.deliver(batch)
        assert all(r.outcome == "delivered" for r in results)


def _open_files(pid: int) -> int:
    return len(psutil.Process(pid).open_files())


@pytest.mark.slow
async def test_10k_mailbox_select_and_header_fetch_stay_lean(imap: ImapHarness) -> None:
    acct = await imap.account()
    await _fill(imap, 10_000)
    proc = psutil.Process(os.getpid())
    opened: list[str] = []
    real_open = acct.open_message

    def counting_open(rec):  # type: ignore[no-untyped-def]
        opened.append(str(rec.uid))
        return real_open(rec)

    acct.open_message = counting_open  # type: ignore[method-assign]
    rss_before = proc.memory_info().rss
    c = await imap.raw_login()
    t0 = time.monotonic()
    reply = await c.cmd(b"s SELECT INBOX", timeout=120)
    assert b"* 10000 EXISTS\r\n" in reply
    reply = await c.cmd(b"f FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)", timeout=300)
    assert len(reply) == 10_001 and reply[-1].startswith(b"f OK")
    assert reply[9_999].startswith(b"* 10000 FETCH (UID 10000 ")
    reply = await c.cmd(b"h FETCH 9990:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", timeout=120)
    assert reply[-1].startswith(b"h OK")
    elapsed = time.monotonic() - t0
    growth = proc.memory_info().rss - rss_before
    # selecting and ENVELOPE-fetching 10,000 messages opens no message file; the header
    # fetch of 11 messages opens 11
    assert len(opened) == 11, len(opened)
    # 10,000 messages × ~8 KiB = 80 MiB of bodies; the server must not hold them
    print(f"10k: rss growth {growth / 2**20:.1f} MiB, {elapsed:.1f} s, files opened {len(opened)}")
    assert growth < 40 * 1024 * 1024, (growth, elapsed)
    await c.close()
