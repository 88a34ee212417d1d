"""TCP listeners for the store's protocols (IMAP, POP3): plain with STARTTLS, or implicit
TLS; a per-IP connection cap; a log context per connection; a clean stop that ends every
open session.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailcore.logging import connection_context, get_logger, next_connection_id
from services.store import deflate
from services.store.auth import ConnectionLimiter, Refusal

log = get_logger("listener")

READ_LIMIT = 128 * 1024  # StreamReader buffer limit; protocol parsers enforce their own
# Seconds a client may leave our output unread (a write waiting for the socket to drain)
# before the connection is dropped: StoreSettings.write_timeout.
DEFAULT_WRITE_TIMEOUT = 300.0


class WriteTimeout(ConnectionError):
    """The client stopped reading: a write waited ``write_timeout`` seconds to drain. The
    connection is aborted already; a ConnectionError, so sessions end as they do when a
    client drops the connection (releasing the POP3 maildrop lock, the user slot…)."""


@dataclass
class Connection:
    """One client connection as the protocol sessions see it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer_ip: str
    peer_port: int
    tls: bool
    conn_id: str
    local_port: int = 0
    # Set when the server stops: sessions say goodbye (IMAP BYE, POP3 -ERR) and end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    deflater: deflate.Deflater | None = None  # RFC 4978 COMPRESS=DEFLATE, once active

    async def drain(self) -> None:
        """``writer.drain()``, bounded by :attr:`write_timeout`. Every protocol write that
        waits for the socket goes through here: without a bound, a client that stops
        reading in the middle of a large response (FETCH, RETR) would hold the session,
        its socket and any lock it has (the POP3 maildrop) forever. On expiry the
        transport is aborted (its unsent buffer dropped) and :class:`WriteTimeout` raised."""
        transport = self.writer.transport
        if not transport.get_write_buffer_size() and not transport.is_closing():
            # everything went to the kernel already (the common case, once per command):
            # writer.drain() would return at once without yielding (writing is not paused
            # with an empty buffer, and a lost connection closes the transport), so it is
            # not called at all, and no timer is armed
            return
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.writer.drain()
        except TimeoutError:
            log.info("client stopped reading; connection dropped", seconds=self.write_timeout)
            self.abort()
            raise WriteTimeout(f"output unread for {self.write_timeout:g} s") from None

    @property
    def disconnected(self) -> bool:
        """The client closed its side (or the connection is gone) and nothing it sent
        before is still unread."""
        return self.writer.transport.is_closing() or self.reader.at_eof()

    async def wait_disconnected(self, poll: float = 0.25) -> None:
        """Return once :attr:`disconnected` (for a command that runs long without
        reading, so that it can stop working for a client that left). Polled: the
        streams offer no event for the peer's EOF that does not consume input."""
        while not self.disconnected:  # noqa: ASYNC110
            await asyncio.sleep(poll)

    def abort(self) -> None:
        """Drop the connection at once, discarding unsent output (``close`` would wait for
        a client that does not read)."""
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade in place (STARTTLS / STLS). Anything the client pipelined before the TLS
        handshake must already have been discarded by the caller (RFC 3207 §4.2 class)."""
        await self.writer.start_tls(context)
        self.tls = True

    def write(self, data: bytes | bytearray) -> None:
        """Queue octets for the client, deflated once COMPRESS is active."""
        self.writer.write(self.deflater(data) if self.deflater is not None else data)

    def start_deflate(self, max_burst: int) -> None:
        """RFC 4978: raw DEFLATE both ways from now on. Call it right after queueing the
        tagged OK and before any await, so that no client octet read after that reply is
        taken as uncompressed."""
        transport = self.writer.transport
        transport.set_protocol(
            deflate.InflatingProtocol(transport.get_protocol(), transport, max_burst)
        )
        self.deflater = deflate.Deflater()

    def discard_pending_input(self) -> int:
        """Drop whatever the client sent that is not read yet; the number of bytes.

        Call it before answering STARTTLS/STLS: bytes pipelined in the clear behind that
        command must never be taken as commands once TLS is up (RFC 3207 §4.2 class of
        injection). StreamReader has no public API for this, hence the one private access.
        """
        buffer: bytearray = self.reader._buffer  # type: ignore[attr-defined]
        n = len(buffer)
        buffer.clear()
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


Handler = Callable[[Connection], Awaitable[None]]
Refuse = Callable[[Connection, Refusal], Awaitable[None]]


class Listener:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        handler: Handler,
        *,
        limiter: ConnectionLimiter,
        ssl_context: ssl.SSLContext | None = None,
        on_refused: Refuse | None = None,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        backlog: int = 1024,
        reuse_port: bool = False,
    ) -> None:
        self.name = name
        # SO_REUSEPORT: other processes (the store's IMAP workers) listen on the same
        # port and the kernel spreads new connections among them
        self.reuse_port = reuse_port
        self.backlog = backlog
        self.write_timeout = write_timeout
        self.host = host
        self.port = port
        self.handler = handler
        self.limiter = limiter
        self.ssl_context = ssl_context
        self.on_refused = on_refused
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            self.host,
            self.port,
            ssl=self.ssl_context,
            limit=READ_LIMIT,
            backlog=self.backlog,
            reuse_port=self.reuse_port or None,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("listening", listener=self.name, host=self.host, port=self.port)

    @property
    def open_sessions(self) -> int:
        return len(self._tasks)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        sock = writer.get_extra_info("sockname") or ("?", 0)
        conn = Connection(
            reader=reader,
            writer=writer,
            peer_ip=str(peer[0]),
            peer_port=int(peer[1]),
            tls=self.ssl_context is not None,
            conn_id=next_connection_id(self.name),
            local_port=int(sock[1]),
            stopping=self._stopping,
            write_timeout=self.write_timeout,
        )
        try:
            with connection_context(conn=conn.conn_id, peer=conn.peer_ip):
                refused = self.limiter.admit(conn.peer_ip)
                if refused is not None:
                    log.warning("connection refused", reason=refused.value)
                    if self.on_refused is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(self.on_refused(conn, refused), 5)
                    return
                try:
                    await self.handler(conn)
                finally:
                    self.limiter.close_ip(conn.peer_ip)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session crashed")
        finally:
            conn.close()
            self._tasks.discard(task)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, give sessions ``grace`` seconds, then cancel them."""
        if self._server is not None:
            self._server.close()
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
