"""PREVIEW (RFC 8970): a short plain-text preview of a message, made when asked.

The text comes from the first text/plain part that is not an attachment (else the first
text/html one, its tags dropped), with its Content-Transfer-Encoding and charset undone,
white space runs collapsed to one space, cut to :data:`LENGTH` characters (§3.1: SHOULD
be at most 200, MUST NOT pass 256). A message without such text previews as the empty
string. Only the first :data:`READ_AT_MOST` octets of the part are read.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Callable

from mailcore import message
from mailcore.message import BodyPart

LENGTH = 200
READ_AT_MOST = 16 * 1024
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def _text_part(part: BodyPart) -> BodyPart | None:
    """The part the preview comes from: text/plain first, then text/html, depth first."""
    found_html: BodyPart | None = None
    stack = [part]
    while stack:
        p = stack.pop(0)
        if p.parts:
            stack[:0] = p.parts
            continue
        if p.disposition is not None and p.disposition[0].lower() == "attachment":
            continue
        if p.type.lower() == "text" and p.subtype.lower() == "plain":
            return p
        if p.type.lower() == "text" and p.subtype.lower() == "html" and found_html is None:
            found_html = p
    return found_html


def _undo_cte(raw: bytes, encoding: str) -> bytes:
    enc = encoding.lower()
    try:
        if enc == "base64":
            b64 = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
            b64 = b64[: len(b64) - len(b64) % 4]  # a cut in the middle of the part
            return base64.b64decode(b64)
        if enc == "quoted-printable":
            return message.decode_qp(raw)
    except (binascii.Error, ValueError):
        return b""
    return raw


def preview(structure: BodyPart, read: Callable[[int, int], bytes]) -> str:
    """The preview text of a message; ``read(start, end)`` gives octets of the message."""
    part = _text_part(structure)
    if part is None:
        return ""
    raw = read(part.body_start, min(part.body_end, part.body_start + READ_AT_MOST))
    text = message.decode_text(_undo_cte(raw, part.encoding), part.param("charset"))
    if part.subtype.lower() == "html":
        text = html.unescape(_TAG.sub(" ", text))
    text = " ".join(text.split())
    return text[:LENGTH].rstrip()
