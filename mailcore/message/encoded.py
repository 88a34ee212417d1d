"""RFC 2047 encoded words and RFC 2231 parameter values, decoded to text.

Used for search (SEARCH FROM/SUBJECT compare decoded text) and for MIME parameters; the
envelope itself keeps encoded words as they are (RFC 3501 §7.4.2 sends raw header text).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from urllib.parse import unquote_to_bytes

# RFC 2047 §2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
# (RFC 2231 §5 allows "charset*language" in the charset position.)
_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN = re.compile(r"(\?=)\s+(=\?)")
_Q_HEX = re.compile(r"=([0-9A-Fa-f]{2})")


def _codec(charset: str) -> str:
    name = charset.split("*", 1)[0].strip().lower()
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "latin-1"


def _decode_bytes(raw: bytes, charset: str) -> str:
    codec = _codec(charset)
    if codec == "ascii":
        # Undeclared 8-bit text is nearly always UTF-8 today.
        codec = "utf-8"
    return raw.decode(codec, "replace")


def _word(match: re.Match[str]) -> str:
    charset, enc, text = match.group(1), match.group(2).upper(), match.group(3)
    if enc == "B":
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return match.group(0)
    else:
        # RFC 2047 §4.2: "_" is a space; "=XX" is an octet.
        raw = _Q_HEX.sub(lambda m: chr(int(m.group(1), 16)), text.replace("_", " ")).encode(
            "latin-1", "replace"
        )
    return _decode_bytes(raw, charset)


def decode_words(value: str) -> str:
    """Text of a header value with RFC 2047 encoded words decoded.

    RFC 2047 §6.2: white space between adjacent encoded words is ignored.
    """
    if "=?" not in value:
        return value
    joined = _BETWEEN.sub(r"\1\2", value)
    return _WORD.sub(_word, joined)


def decode_2231(value: str, *, extended: bool) -> str:
    """One RFC 2231 §4 extended value ``charset'language'%XX..`` (or a plain segment)."""
    if not extended:
        return value
    charset = ""
    parts = value.split("'", 2)
    if len(parts) == 3:
        charset, _lang, value = parts
    raw = unquote_to_bytes(value)
    return _decode_bytes(raw, charset or "us-ascii")


def decode_text(raw: bytes, charset: str | None) -> str:
    """A decoded MIME body in its charset (unknown charsets read as Latin-1)."""
    return _decode_bytes(raw, charset or "us-ascii")
