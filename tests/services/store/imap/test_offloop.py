"""Work kept off the event loop for large messages (section reads in a thread, small ones
inline), and the keyword limits as IMAP replies."""

from __future__ import annotations

import threading
from typing import Any, BinaryIO

import pytest

from services.store.imap.handlers.fetch import BIG_READ
from tests.services.store.imap.conftest import ImapHarness, message


class _Recording:
    """A message file whose reads note whether they ran on the event loop's thread."""

    def __init__(self, inner: BinaryIO, log: list[tuple[int, bool]], loop_thread: int) -> None:
        self._inner, self._log, self._loop = inner, log, loop_thread

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._log.append((len(data), threading.get_ident() == self._loop))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_large_sections_are_read_in_a_thread(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = message(1)
    big = message(2, body=(b"w" * 78 + b"\r\n") * 4000)  # ~320 KB
    assert len(small) < BIG_READ < len(big)
    await imap.deliver(small, big)
    acct = await imap.account()
    reads: list[tuple[int, bool]] = []
    loop_thread = threading.get_ident()
    real_open = acct.open_message
    monkeypatch.setattr(
        acct, "open_message", lambda rec: _Recording(real_open(rec), reads, loop_thread)
    )
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    reply = await c.cmd(b"f FETCH 1 BODY.PEEK[]")
    assert reply[-1].startswith(b"f OK")
    assert reads == [(len(small), True)]  # a small read stays inline
    reads.clear()
    await c.send(b"g FETCH 2 BODY.PEEK[]\r\n")
    head = await c.line()
    assert head.endswith(b"{%d}\r\n" % len(big)), head
    assert await c.reader.readexactly(len(big)) == big
    assert (await c.until_tagged(b"g"))[-1].startswith(b"g OK")
    assert reads == [(len(big), False)]  # the large one in a thread
    await c.close()


async def test_keyword_limits_answer_no_limit(imap: ImapHarness) -> None:
    await imap.deliver(message(1))
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    many = b" ".join(b"$k%d" % i for i in range(101))
    reply = await c.cmd(b"a STORE 1 +FLAGS (" + many + b")")
    assert reply[-1].startswith(b"a NO [LIMIT] Too many keywords: 101 keywords"), reply
    reply = await c.cmd(b"b STORE 1 +FLAGS (" + b" ".join(b"$k%d" % i for i in range(100)) + b")")
    assert reply[-1].startswith(b"b OK"), reply
    await c.close()
