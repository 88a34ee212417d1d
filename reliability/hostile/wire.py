"""A raw line client for the hostile probes: send exact bytes, read what comes back,
upgrade to TLS in place (no verification: the cluster's certificate is self-signed)."""

from __future__ import annotations

import asyncio
import ssl


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", local: str | None = None) -> Wire:
        addr = (local, 0) if local else None
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=addr), 10)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, timeout: float = 10.0) -> str:
        """One line; ``""`` at end of stream; ``"<timeout>"`` when nothing came."""
        try:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
        except TimeoutError:
            return "<timeout>"
        except OSError as exc:
            return f"<{type(exc).__name__}>"
        return raw.decode("latin-1").rstrip("\r\n")

    async def smtp_reply(self, timeout: float = 10.0) -> str:
        """A whole (multi-line) SMTP reply; its last line."""
        while True:
            line = await self.line(timeout)
            if len(line) < 4 or line[3] != "-":
                return line

    async def until_tagged(self, tag: str, timeout: float = 10.0) -> list[str]:
        """IMAP: every line up to and including the one tagged ``tag``."""
        out = []
        while True:
            line = await self.line(timeout)
            out.append(line)
            if line.startswith(tag + " ") or line.startswith("<") or not line:
                return out

    async def quiet(self, timeout: float = 1.0) -> str:
        """What arrives within ``timeout`` (``""`` when nothing)."""
        try:
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
        except TimeoutError:
            return ""
        except OSError:
            return "<closed>"
        return data.decode("latin-1") if data else "<closed>"

    async def start_tls(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        await self.writer.start_tls(ctx)

    def close(self) -> None:
        self.writer.close()
