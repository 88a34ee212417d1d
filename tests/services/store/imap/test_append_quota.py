"""APPEND over quota is refused before the continuation: the client never uploads a message
the server would throw away (RFC 9208 §4.3, RFC 7889 style)."""

from __future__ import annotations

from tests.services.store.imap.conftest import ALICE, Factory, message


async def test_append_over_quota_is_refused_before_the_continuation(make_imap: Factory) -> None:
    h = await make_imap(user=False)
    await h.add_user(ALICE, quota_bytes=20 * 1024)
    a = await h.raw_login()
    small = message(1)
    await a.send(b"p APPEND INBOX {%d}\r\n" % len(small))
    assert (await a.line()).startswith(b"+ ")  # fits: the client may send it
    await a.send(small + b"\r\n")
    assert (await a.until_tagged(b"p"))[-1].startswith(b"p OK")
    # 30 KiB over a 20 KiB quota: the answer comes instead of the "+", nothing is read
    await a.send(b"x APPEND INBOX {%d}\r\n" % (30 * 1024))
    assert await a.line() == b"x NO [OVERQUOTA] Quota exceeded\r\n"
    # the session goes on in step: the next line is a command, not literal data
    assert (await a.cmd(b"n NOOP"))[-1].startswith(b"n OK")
    await a.close()


async def test_append_message_count_quota_before_the_continuation(make_imap: Factory) -> None:
    h = await make_imap(user=False)
    await h.add_user(ALICE, quota_messages=1)
    await h.deliver(message(1))
    a = await h.raw_login()
    await a.send(b"x APPEND INBOX {100}\r\n")
    assert await a.line() == b"x NO [OVERQUOTA] Quota exceeded\r\n"
    assert (await a.cmd(b"n NOOP"))[-1].startswith(b"n OK")
    await a.close()
