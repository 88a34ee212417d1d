"""RFC 1939 sessions and slow clients: a client that stops reading in the middle of RETR
is dropped after the write timeout, and the maildrop lock goes with it (else every later
login would get [IN-USE] for ever)."""

from __future__ import annotations

import asyncio

from tests.services.store.pop3.conftest import PASSWORD, Factory
from tests.services.store.stalled import big_message, stalled_client, until


async def test_pop3_client_that_stops_reading_loses_the_lock(make_pop3: Factory) -> None:
    pop = await make_pop3(write_timeout=0.5)
    user = await pop.add_user()
    await pop.deliver(user, big_message())
    sock = await asyncio.to_thread(
        stalled_client,
        pop.port,
        [b"USER " + user.address.encode(), b"PASS " + PASSWORD.encode(), b"RETR 1"],
    )
    try:
        assert pop.server.env.locks.holder(user.account_id) is not None
        await until(lambda: pop.server.open_sessions == 0, "the stalled session ended")
        assert pop.server.env.locks.holder(user.account_id) is None
        assert len(pop.server.env.locks) == 0

        def login_again() -> bytes:
            c = pop.login(user.address)
            stat = c.stat()
            c.quit()
            return str(stat).encode()

        assert await pop.run(login_again) == b"(1, %d)" % len(big_message())
    finally:
        sock.close()
