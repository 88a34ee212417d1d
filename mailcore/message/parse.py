"""The MIME tree of a message with byte offsets, its envelope and search data.

One pass over the bytes, no ``email`` package: headers are split with two regular
expressions, multipart bodies are cut at their boundary lines (RFC 2046 §5.1.1), and
``message/rfc822`` parts are parsed as messages of their own. Offsets let IMAP serve
``BODY[1.2.HEADER]`` and friends straight from the stored file without parsing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailcore.message.dates import parse_date
from mailcore.message.encoded import decode_words
from mailcore.message.headers import (
    Address,
    address_text,
    first,
    parse_addresses,
    parse_content_type,
    parse_disposition,
    split_fields,
)

MAX_DEPTH = 40  # deeper nesting is kept as one opaque part
# MIME parts per message (Dovecot's default limit too): a megabyte of "--b" lines would
# otherwise become hundreds of thousands of parts, each kept in the index and rendered in
# BODYSTRUCTURE. Parts past the limit are left out of the structure (their bytes stay
# in the parent's body, as an epilogue's do).
MAX_PARTS = 10_000
Fields = list[tuple[str, str]]


@dataclass(slots=True)
class Envelope:
    """RFC 3501 §7.4.2 envelope data: raw header values (RFC 2047 words left encoded)."""

    date: str | None = None
    subject: str | None = None
    from_: list[Address] = field(default_factory=list)
    sender: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    in_reply_to: str | None = None
    message_id: str | None = None


@dataclass(slots=True)
class BodyPart:
    """One node of the MIME tree; the header is ``[header_start, body_start)`` of the file
    (blank line included) and the body ``[body_start, body_end)``."""

    header_start: int
    body_start: int
    body_end: int
    type: str = "text"
    subtype: str = "plain"
    params: list[tuple[str, str]] = field(default_factory=list)
    id: str | None = None
    description: str | None = None
    encoding: str = "7bit"
    size: int = 0
    lines: int | None = None
    md5: str | None = None
    disposition: tuple[str, list[tuple[str, str]]] | None = None
    language: list[str] | None = None
    location: str | None = None
    parts: list[BodyPart] = field(default_factory=list)
    message: tuple[Envelope, BodyPart] | None = None

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class ParsedMessage:
    """What the store caches per message at delivery, so FETCH and SEARCH never re-parse."""

    envelope: Envelope
    structure: BodyPart
    header_size: int
    # Decoded (RFC 2047) text of from/to/cc/bcc/subject, for SEARCH (RFC 3501 §6.4.4);
    # "" for a field that is present without text, no key for an absent field.
    decoded: dict[str, str] = field(default_factory=dict)
    sent: float | None = None  # the Date header as epoch seconds
    sent_day: int | None = None  # the Date header's own calendar day, yyyymmdd


def _header_end(data: bytes, start: int, end: int) -> int:
    """Where the body starts: after the first empty line, or ``end`` without one."""
    if start >= end:
        return end
    if data.startswith(b"\n", start):
        return start + 1
    if data.startswith(b"\r\n", start):
        return start + 2
    # Look for the CRLF form first and for a bare-LF blank line only before it, so a CRLF
    # message is not scanned to its end for "\n\n".
    j = data.find(b"\n\r\n", start, end)
    i = data.find(b"\n\n", start, j if j >= 0 else end)
    if i >= 0:
        return i + 2
    if j >= 0:
        return j + 3
    return end


def _count_lines(data: bytes, start: int, end: int) -> int:
    if start >= end:
        return 0
    n = data.count(b"\n", start, end)
    return n if data[end - 1] == 10 else n + 1


def envelope_of(fields: Fields) -> Envelope:
    values: dict[str, str] = {}
    for key, value in fields:
        if key in _ENVELOPE_FIELDS and key not in values:
            values[key] = value
    from_ = parse_addresses(values.get("from"))
    sender = parse_addresses(values.get("sender"))
    reply_to = parse_addresses(values.get("reply-to"))
    return Envelope(
        date=values.get("date"),
        subject=values.get("subject"),
        from_=from_,
        # RFC 3501 §7.4.2: sender and reply-to default to from when absent.
        sender=sender or list(from_),
        reply_to=reply_to or list(from_),
        to=parse_addresses(values.get("to")),
        cc=parse_addresses(values.get("cc")),
        bcc=parse_addresses(values.get("bcc")),
        in_reply_to=values.get("in-reply-to"),
        message_id=values.get("message-id"),
    )


_ENVELOPE_FIELDS = frozenset(
    (
        "date",
        "subject",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "in-reply-to",
        "message-id",
    )
)
_SEARCHED = frozenset(("from", "to", "cc", "bcc", "subject"))
_PART_FIELDS = frozenset(
    (
        "content-type",
        "content-transfer-encoding",
        "content-id",
        "content-description",
        "content-md5",
        "content-disposition",
        "content-language",
        "content-location",
    )
)


def _delimiters(
    data: bytes, boundary: bytes, start: int, end: int, limit: int
) -> list[tuple[int, int, bool]]:
    """Boundary lines in ``[start, end)``: (line start, after the line, is close-delimiter);
    at most ``limit`` of them.

    RFC 2046 §5.1.1: a delimiter is "--" boundary at the start of a line, optionally
    followed by "--" (the close delimiter) and transport padding.
    """
    delim = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    pos = start
    while True:
        i = data.find(delim, pos, end)
        if i < 0:
            return found
        pos = i + len(delim)
        if i != start and data[i - 1] != 10:
            continue
        close = data.startswith(b"--", pos)
        rest = pos + 2 if close else pos
        nl = data.find(b"\n", rest, end)
        line_end = end if nl < 0 else nl + 1
        if data[rest:line_end].strip(b" \t\r\n"):
            continue  # a longer boundary that merely starts with ours
        found.append((i, line_end, close))
        if close or len(found) >= limit:
            return found
        pos = line_end


def _part_end(data: bytes, line_start: int, floor: int) -> int:
    """The body before a delimiter line ends before the line break that precedes it."""
    end = line_start
    if end > floor and data[end - 1] == 10:
        end -= 1
        if end > floor and data[end - 1] == 13:
            end -= 1
    return end


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.parts_left = MAX_PARTS

    def part(self, start: int, end: int, depth: int, digest: bool) -> tuple[BodyPart, Fields]:
        data = self.data
        self.parts_left -= 1
        body_start = _header_end(data, start, end)
        fields = split_fields(data[start:body_start]) if body_start > start else []
        p = BodyPart(header_start=start, body_start=body_start, body_end=end)
        p.size = end - body_start
        mime: dict[str, str] = {}
        for key, value in fields:
            if key in _PART_FIELDS and key not in mime:
                mime[key] = value
        ctype = parse_content_type(mime.get("content-type"))
        if ctype is None:
            # RFC 2045 §5.2 default; RFC 2046 §5.1.5: in multipart/digest, message/rfc822.
            if digest:
                p.type, p.subtype, p.params = "message", "rfc822", []
            else:
                p.params = [("charset", "us-ascii")]
        else:
            p.type, p.subtype, p.params = ctype
        cte = mime.get("content-transfer-encoding")
        if cte:
            p.encoding = cte.strip().lower() or "7bit"
        p.id = mime.get("content-id")
        p.description = mime.get("content-description")
        p.md5 = mime.get("content-md5")
        p.disposition = parse_disposition(mime.get("content-disposition"))
        lang = mime.get("content-language")
        if lang:
            p.language = [t.strip() for t in lang.split(",") if t.strip()] or None
        p.location = mime.get("content-location")
        if p.type == "multipart":
            boundary = p.param("boundary")
            if not boundary or depth >= MAX_DEPTH or self.parts_left <= 0:
                # RFC 2046 §5.1.1: the boundary is mandatory; without it, plain text.
                p.type, p.subtype = "text", "plain"
            else:
                self.children(p, boundary.encode("utf-8", "replace"), depth)
                return p, fields
        if (
            p.type == "message"
            and p.subtype in ("rfc822", "global")
            and depth < MAX_DEPTH
            and self.parts_left > 0
            and p.encoding in ("7bit", "8bit", "binary")
        ):
            inner, inner_fields = self.part(body_start, end, depth + 1, False)
            p.message = (envelope_of(inner_fields), inner)
        if p.type == "text" or p.message is not None:
            p.lines = _count_lines(data, body_start, end)
        return p, fields

    def children(self, p: BodyPart, boundary: bytes, depth: int) -> None:
        data = self.data
        delims = _delimiters(data, boundary, p.body_start, p.body_end, self.parts_left + 1)
        digest = p.subtype == "digest"
        for n, (_line_start, after, close) in enumerate(delims):
            if close or self.parts_left <= 0:
                break
            if n + 1 < len(delims):
                part_end = _part_end(data, delims[n + 1][0], after)
            else:
                part_end = p.body_end  # no close delimiter: the last part runs to the end
            child, _ = self.part(after, part_end, depth + 1, digest)
            p.parts.append(child)
        if not p.parts:
            # RFC 3501 §7.4.2 needs at least one part; an empty text/plain stands in.
            p.parts.append(
                BodyPart(
                    header_start=p.body_end,
                    body_start=p.body_end,
                    body_end=p.body_end,
                    params=[("charset", "us-ascii")],
                    lines=0,
                )
            )


def parse(data: bytes) -> ParsedMessage:
    """Parse a whole message; never raises on malformed input (best effort)."""
    structure, fields = _Parser(data).part(0, len(data), 0, False)
    envelope = envelope_of(fields)
    decoded: dict[str, str] = {}
    if envelope.subject:
        decoded["subject"] = decode_words(envelope.subject)
    for name, addrs in (
        ("from", envelope.from_),
        ("to", envelope.to),
        ("cc", envelope.cc),
        ("bcc", envelope.bcc),
    ):
        if addrs:
            decoded[name] = decode_words(address_text(addrs))
    # A field that is present without text (no address, empty subject) is "": RFC 3501
    # §6.4.4 HEADER with an empty string matches every message that has the field.
    for key, _ in fields:
        if key in _SEARCHED and key not in decoded:
            decoded[key] = ""
    sent = parse_date(envelope.date) if envelope.date else None
    return ParsedMessage(
        envelope=envelope,
        structure=structure,
        header_size=structure.body_start,
        decoded=decoded,
        sent=sent[0] if sent else None,
        sent_day=sent[1] if sent else None,
    )


def header_fields(data: bytes) -> Fields:
    """Every field of a header block (for SEARCH HEADER and header-field fetches)."""
    return split_fields(data)


__all__ = ["Address", "BodyPart", "Envelope", "ParsedMessage", "first", "header_fields", "parse"]
