"""COMPRESS=DEFLATE (RFC 4978): raw deflate both ways after the tagged OK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store import deflate
from services.store.imap import responses
from services.store.imap.commands import Compress, Request
from services.store.imap.errors import Refused, bad
from services.store.imap.lexer import MAX_LINE

if TYPE_CHECKING:
    from services.store.imap.session import Session


async def compress(s: Session, req: Request) -> str | None:
    assert isinstance(req.args, Compress)
    if req.args.mechanism != "DEFLATE":
        raise bad("Unknown compression mechanism")  # RFC 4978 §3: BAD
    if s.conn.deflater is not None or deflate.tls_compressed(s.conn.writer):
        # RFC 4978 §3/§4: never twice, nor over a compressing TLS layer
        raise Refused("Compression is already active", code="COMPRESSIONACTIVE")
    # RFC 4978 §3: anything the client sent behind COMPRESS before our reply is not
    # compressed data; dropped, as after STARTTLS, rather than misread
    s.conn.discard_pending_input()
    s.send(responses.tagged(req.tag, "OK", "DEFLATE active"))
    pending, s.out = s.out, bytearray()
    s.conn.write(pending)  # the last uncompressed octets
    # no await between queueing the reply and the switch: every octet read from here on
    # is inflated; one socket read may inflate to at most a whole message and a line
    s.conn.start_deflate(max_burst=s.rt.max_message_size + 4 * MAX_LINE)
    await s.conn.drain()
    return None
