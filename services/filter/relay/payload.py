"""The message text of a DATA command (RFC 5321 §4.1.1.4) as it goes on the wire.

A general encoder runs two regular expressions over every message (line endings, then
dot-stuffing): the relay's profile under W8 showed them as a visible share of its CPU
(that was aiosmtplib's ``data()``). The filter stores bodies with CRLF line endings
already, so the common case is one ``count`` per character class and one ``replace``;
anything else takes the general path.
"""

from __future__ import annotations

import re

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
