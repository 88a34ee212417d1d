"""The load generator records what the server really said: 250 is acked, 4xx/5xx refused,
a connection dropped after the data unknown; 4xx and unknown are retried, 5xx is not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from reliability.ledger import Ledger, Outcome
from reliability.load import Load, send_once

Behaviour = Callable[[int], bytes | None]  # attempt number -> reply to the final dot (None: drop)


async def _serve(behaviour: Behaviour) -> tuple[asyncio.Server, list[int]]:
    attempts: list[int] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220 fake\r\n")
        try:
            while line := await r.readline():
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    w.write(b"250-fake\r\n250 8BITMIME\r\n")
                elif cmd == b"DATA":
                    w.write(b"354 go\r\n")
                    await w.drain()
                    while (await r.readline()) != b".\r\n":
                        pass
                    attempts.append(len(attempts))
                    reply = behaviour(attempts[-1])
                    if reply is None:
                        w.close()
                        return
                    w.write(reply)
                elif cmd == b"QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    w.close()
                    return
                else:
                    w.write(b"250 ok\r\n")
                await w.drain()
        except ConnectionError:
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, attempts


@pytest.fixture
async def port_of() -> AsyncIterator[Callable[[Behaviour], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(b: Behaviour) -> int:
        server, _ = await _serve(b)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for s in servers:
        s.close()


@pytest.mark.parametrize(
    "reply,step,code",
    [(b"250 queued\r\n", "END", 250), (b"451 later\r\n", "END", 451), (None, "END", None)],
)
async def test_send_once_reports_the_servers_own_answer(
    port_of: Callable[[Behaviour], Awaitable[int]],
    reply: bytes | None,
    step: str,
    code: int | None,
) -> None:
    port = await port_of(lambda n: reply)
    got = await send_once("127.0.0.1", port, "a@b.example", ["c@d.example"], b"x\r\n", 5)
    assert got[:2] == (step, code)


async def test_retries_4xx_and_unknown_until_acked_and_stops_at_5xx() -> None:
    script = [b"451 busy\r\n", None, b"250 ok\r\n", b"554 no\r\n"]
    server, attempts = await _serve(lambda n: script[n] if n < len(script) else b"250 ok\r\n")
    port = int(server.sockets[0].getsockname()[1])
    ledger = Ledger()
    load = Load("127.0.0.1", port, ledger, ["c@d.example"], senders=1, retry_delay=0.01)
    load.start()
    while len(attempts) < 4:
        await asyncio.sleep(0.01)
    await load.stop()
    server.close()
    entries = list(ledger)
    outcomes = [e.outcome for e in entries[:4]]
    assert outcomes == [Outcome.REFUSED, Outcome.UNKNOWN, Outcome.ACKED, Outcome.REFUSED]
    assert len({e.rid for e in entries[:3]}) == 1  # one message, retried
    assert entries[3].rid != entries[0].rid and entries[3].code == 554
    assert entries[3].bad_answer  # a valid message answered 5xx
