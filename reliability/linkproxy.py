"""A TCP hop that can be cut: the mirror's link to its peer's NATS goes through one, so a
scenario can take the link down and bring it back without touching either store.

Three states:

* ``up`` — bytes flow both ways;
* ``reset`` — every open connection is closed at once (both ends see it drop) and new
  ones are closed as soon as they are accepted: a peer site rebooting, a firewall
  rejecting;
* ``stall`` — connections stay open but no byte moves either way, and new connections
  are held unanswered (the client's connect times out): a black hole, packets dropped.
  When the link comes back the held bytes are delivered, as TCP would retransmit them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from enum import StrEnum


class LinkState(StrEnum):
    UP = "up"
    RESET = "reset"
    STALL = "stall"


@dataclass
class LinkStats:
    connections: int = 0  # connections forwarded to the target
    cut: int = 0  # open connections closed by a reset
    refused: int = 0  # connections closed on arrival while reset
    cuts: int = 0  # times the link went down (reset or stall)


@dataclass(eq=False)
class _Conn:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for w in self.writers:
            with contextlib.suppress(Exception):
                w.transport.abort()
        for t in self.tasks:
            t.cancel()


class LinkProxy:
    """Listens on ``host``:``port`` (0: any free port) and forwards to ``target_port``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.state = LinkState.UP
        self.stats = LinkStats()
        self._open = asyncio.Event()
        self._open.set()
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()
        self._open.set()  # release whatever waits, so its task ends

    def cut(self, how: LinkState = LinkState.RESET) -> None:
        """Take the link down (``reset`` or ``stall``)."""
        if how is LinkState.UP:
            raise ValueError("cut() takes reset or stall; restore() brings the link up")
        if self.state is LinkState.UP:
            self.stats.cuts += 1
        self.state = how
        self._open.clear()
        if how is LinkState.RESET:
            for conn in list(self._conns):
                self.stats.cut += 1
                conn.abort()
            self._conns.clear()

    def restore(self) -> None:
        self.state = LinkState.UP
        self._open.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state is LinkState.RESET:
            self.stats.refused += 1
            writer.transport.abort()
            return
        conn = _Conn(writers=[writer])
        self._conns.add(conn)
        try:
            await self._open.wait()  # a stalled link holds a new connection unanswered
            if conn not in self._conns:  # reset meanwhile
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
            except OSError:
                return
            self.stats.connections += 1
            conn.writers.append(up_writer)
            conn.tasks = [
                asyncio.create_task(self._pump(reader, up_writer, conn)),
                asyncio.create_task(self._pump(up_reader, writer, conn)),
            ]
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*conn.tasks)
        finally:
            self._conns.discard(conn)
            for w in conn.writers:
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        try:
            while data := await src.read(65536):
                await self._open.wait()  # stalled: hold the bytes until the link is back
                if conn not in self._conns:
                    return
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()


__all__ = ["LinkProxy", "LinkState", "LinkStats"]
