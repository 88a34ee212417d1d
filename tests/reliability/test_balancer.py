"""The webmail scenario's balancer: connections go to a node that accepts them (a dead
node is skipped, however many connections race), and a request a node dies on is seen in
flight and counted as cut."""

from __future__ import annotations

import asyncio

from reliability.balancer import Balancer
from services.ctl import daemons


async def _node(answer: bool) -> tuple[asyncio.Server, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        if answer:
            w.write(b"pong\n")
            await w.drain()
        else:
            await asyncio.sleep(0.5)  # "dies" with the request unanswered
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ping(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"ping\n")
    await w.drain()
    line = await r.readline()
    w.close()
    return line


async def test_a_dead_node_is_skipped_by_racing_connections() -> None:
    server, alive = await _node(answer=True)
    lb = Balancer([daemons.free_port(), alive])  # the first port has nobody listening
    await lb.start()
    try:
        answers = await asyncio.gather(*(_ping(lb.port) for _ in range(40)))
        assert answers == [b"pong\n"] * 40
        assert lb.refused[lb.ports[0]] > 0
    finally:
        await lb.stop()
        server.close()


async def test_a_request_the_node_dies_on_is_in_flight_then_cut() -> None:
    server, port = await _node(answer=False)
    lb = Balancer([port])
    await lb.start()
    try:
        ping = asyncio.create_task(_ping(lb.port))
        while not lb.in_flight(port):
            await asyncio.sleep(0.01)
        assert await ping == b""  # the client saw the connection end, no answer
        assert lb.cut[port] == 1 and not lb.in_flight(port)
    finally:
        await lb.stop()
        server.close()
