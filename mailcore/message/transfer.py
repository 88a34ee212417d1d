"""Content-Transfer-Encoding decoding that BINARY[] (RFC 3516), BINARY.SIZE and body
search share.

Quoted-printable per RFC 2045 §6.7: white space at the end of an encoded line is transport
padding and is deleted (rule 3); ``=`` ending a line, white space after it allowed, is a
soft line break (rule 5); ``=XX`` is an octet (lower-case hex accepted, as the RFC asks of
a robust decoder); an ``=`` not followed by two hex digits stays as it is.
"""

from __future__ import annotations

import re

_LINES = re.compile(rb"\r\n|\n")
_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _octet(m: re.Match[bytes]) -> bytes:
    return bytes((int(m.group(1), 16),))


def decode_qp(raw: bytes) -> bytes:
    """RFC 2045 §6.7 quoted-printable to octets; line breaks come out as CRLF."""
    lines = _LINES.split(raw)
    out: list[bytes] = []
    last = len(lines) - 1
    for n, encoded in enumerate(lines):
        text = encoded.rstrip(b" \t")  # rule 3: trailing white space is not data
        soft = text.endswith(b"=")
        if soft:
            text = text[:-1]  # rule 5: "=" (then white space) before the line break
        out.append(_ESCAPE.sub(_octet, text) if b"=" in text else text)
        if n != last and not soft:
            out.append(b"\r\n")
    return b"".join(out)


__all__ = ["decode_qp"]
