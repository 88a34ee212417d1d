"""A client that stops reading in the middle of a large FETCH is dropped after the write
timeout: its session ends and its slot of the per-user connection limit is free again."""

from __future__ import annotations

import asyncio

from tests.services.store.imap.conftest import ALICE, PASSWORD, Factory
from tests.services.store.stalled import big_message, stalled_client, until


async def test_imap_client_that_stops_reading_is_dropped(make_imap: Factory) -> None:
    h = await make_imap(write_timeout=0.5, max_per_user=1)
    await h.deliver(big_message())
    sock = await asyncio.to_thread(
        stalled_client,
        h.port,
        [f'a LOGIN {ALICE} "{PASSWORD}"'.encode(), b"b SELECT INBOX", b"c FETCH 1 BODY[]"],
    )
    try:
        await until(lambda: h.server.open_sessions == 0, "the stalled session ended")
        # the one session allowed for the user (max_per_user=1) is free again
        c = await h.raw_login()
        assert (await c.cmd(b"n NOOP"))[-1].startswith(b"n OK")
        await c.close()
    finally:
        sock.close()
