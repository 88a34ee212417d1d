"""The message text of a DATA command (RFC 5321 §4.1.1.4) as it goes on the wire.

aiosmtplib's ``data()`` runs two regular expressions over every message (line endings,
then dot-stuffing): the relay's profile under W8 showed them as a visible share of its
CPU. The filter stores bodies with CRLF line endings already, so the common case is one
``count`` per character class and one ``replace``; anything else takes the general path.
"""

from __future__ import annotations

import re

import aiosmtplib

_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")


def encode_data(body: bytes) -> bytes:
    """``body`` with CRLF line endings, ending in CRLF, dot-stuffed (RFC 5321 §4.5.2),
    followed by the end-of-data line ``.``."""
    crlf = body.count(b"\r\n")
    if not (body.count(b"\r") == crlf == body.count(b"\n")):
        body = _LINE_ENDINGS.sub(b"\r\n", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    # §4.5.2: a line that starts with "." gets one more.
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + b".\r\n"


async def send_data(client: aiosmtplib.SMTP, body: bytes, timeout: float) -> None:
    """DATA, then the text; raises aiosmtplib's errors as ``client.data`` does.

    One command, one reply at a time, as aiosmtplib's protocol expects: the write and the
    read that follows it have no await between them."""
    start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    protocol.write(encode_data(body))
    reply = await protocol.read_response(timeout=timeout)
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
