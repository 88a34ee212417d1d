"""A round-robin TCP balancer in front of webmail nodes ("one address"), like an operator's
HAProxy: each new connection goes to the next node that accepts it. It tells which node
has a request in flight (request bytes forwarded, no response byte yet), so a scenario can
kill a node exactly mid-request, and counts the requests cut that way."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter


class Balancer:
    def __init__(self, ports: list[int], host: str = "127.0.0.1") -> None:
        self.ports = ports
        self.host = host
        self.port = 0
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self.waiting: Counter[int] = Counter()  # node port -> requests awaiting a response
        self.cut: Counter[int] = Counter()  # node port -> requests its death cut
        self.refused: Counter[int] = Counter()  # node port -> connections it refused

    def in_flight(self, port: int) -> bool:
        return self.waiting[port] > 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        port = 0
        start = next(self._turn)
        for i in range(len(self.ports)):  # every node once, from this turn's (redispatch)
            port = self.ports[(start + i) % len(self.ports)]
            try:
                upstream = await asyncio.open_connection(self.host, port)
                break
            except OSError:
                self.refused[port] += 1
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        waiting = False

        def set_waiting(value: bool) -> None:
            nonlocal waiting
            if value != waiting:
                self.waiting[port] += 1 if value else -1
                waiting = value

        async def to_node() -> None:
            try:
                while data := await reader.read(65536):
                    set_waiting(True)
                    up_writer.write(data)
                    await up_writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    up_writer.close()

        async def to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    set_waiting(False)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                if waiting:  # the node went away with a request unanswered
                    self.cut[port] += 1
                set_waiting(False)
                with contextlib.suppress(Exception):
                    writer.close()

        await asyncio.gather(to_node(), to_client())
