"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII except ``&`` stands for itself, ``&`` is ``&-``, and every other run of
characters is ``&`` + modified BASE64 (``,`` for ``/``, no padding) of UTF-16BE + ``-``.
Decoding is strict: only the canonical encoding of a name is accepted, so each name has
exactly one wire form.
"""

from __future__ import annotations

import base64
import binascii


class Utf7Error(ValueError):
    """Not a canonical modified UTF-7 string."""


class Undecodable(str):
    """A mailbox name sent as a well-formed astring of printable US-ASCII that is not the
    canonical modified UTF-7 of any name (e.g. ``&AGE-`` for ``a``, or ``&Jjo`` unended).

    It names no mailbox: SELECT answers ``NO [NONEXISTENT]``, a LIST pattern matches
    nothing and CREATE is refused with a reason — never ``BAD`` (the syntax is fine). The
    value is the wire text behind a NUL, which no stored name can hold, so lookups and
    pattern matches can never hit a real mailbox."""

    @classmethod
    def of(cls, wire: str) -> Undecodable:
        return cls("\x00" + wire)

    @property
    def wire(self) -> str:
        return self[1:]


def _b64(chars: str) -> str:
    raw = chars.encode("utf-16-be", "surrogatepass")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode(name: str) -> str:
    if name.isascii() and name.isprintable() and "&" not in name:
        return name  # printable US-ASCII other than "&" represents itself (RFC 3501 §5.1.3)
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if run:
                out.append("&" + _b64("".join(run)) + "-")
                run.clear()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append("&" + _b64("".join(run)) + "-")
    return "".join(out)


def decode(wire: str) -> str:
    out: list[str] = []
    i, n = 0, len(wire)
    while i < n:
        ch = wire[i]
        if not 0x20 <= ord(ch) <= 0x7E:
            raise Utf7Error("8-bit or control character in mailbox name")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = wire.find("-", i + 1)
        if end < 0:
            raise Utf7Error("unterminated & sequence")
        chunk = wire[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if "/" in chunk or "=" in chunk:
            raise Utf7Error("not modified BASE64")
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
            text = raw.decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            raise Utf7Error("bad modified BASE64") from None
        if _b64(text) != chunk or any(0x20 <= ord(c) <= 0x7E for c in text):
            raise Utf7Error("non-canonical modified UTF-7")
        out.append(text)
    result = "".join(out)
    if encode(result) != wire:
        raise Utf7Error("non-canonical modified UTF-7")
    return result
