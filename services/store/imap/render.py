"""Rendering of message data for FETCH (RFC 3501 §7.4.2): ENVELOPE, BODY/BODYSTRUCTURE,
INTERNALDATE, and the byte ranges of BODY[section] (found by walking the MIME tree with
its offsets — a message is never re-parsed here)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from mailcore.message import Address, BodyPart, Envelope
from services.store.imap import downgrade
from services.store.imap import responses as r
from services.store.imap.commands import Section

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def internal_date(ts: float) -> bytes:
    """RFC 3501 §9 date-time, in UTC: ``"17-Jul-1996 09:44:25 +0000"``."""
    t = time.gmtime(ts)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def _addresses(addrs: Sequence[Address], utf8: bool = False) -> bytes:
    if not addrs:
        return b"NIL"
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)"
            % (
                r.nstring(a.name, utf8),
                r.nstring(a.adl, utf8),
                r.nstring(a.mailbox, utf8),
                r.nstring(a.host, utf8),
            )
            for a in addrs
        )
        + b")"
    )


def envelope(e: Envelope, utf8: bool = False) -> bytes:
    """RFC 3501 §7.4.2 ENVELOPE; sender and reply-to default to from. RFC 6855: UTF-8 in
    quoted strings for a client that enabled UTF8=ACCEPT (or IMAP4rev2), the RFC 6857
    downgrade for one that did not (§7)."""
    if not utf8:
        e = downgrade.envelope(e)
    frm = _addresses(e.from_, utf8)
    sender = frm if not e.sender or e.sender == e.from_ else _addresses(e.sender, utf8)
    reply_to = frm if not e.reply_to or e.reply_to == e.from_ else _addresses(e.reply_to, utf8)
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        r.nstring(e.date, utf8),
        r.nstring(e.subject, utf8),
        frm,
        sender,
        reply_to,
        _addresses(e.to, utf8),
        _addresses(e.cc, utf8),
        _addresses(e.bcc, utf8),
        r.nstring(e.in_reply_to, utf8),
        r.nstring(e.message_id, utf8),
    )


def _params(params: Sequence[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(r.text(k.upper()) + b" " + r.text(v) for k, v in params) + b")"


def _disposition(p: BodyPart) -> bytes:
    if p.disposition is None:
        return b"NIL"
    kind, params = p.disposition
    return b"(%s %s)" % (r.text(kind.upper()), _params(params))


def _language(p: BodyPart) -> bytes:
    if not p.language:
        return b"NIL"
    if len(p.language) == 1:
        return r.text(p.language[0])
    return b"(" + b" ".join(r.text(x) for x in p.language) + b")"


def body_structure(p: BodyPart, extended: bool) -> bytes:
    """RFC 3501 §7.4.2 BODY (``extended=False``) and BODYSTRUCTURE."""
    if p.parts:
        inner = b"".join(body_structure(c, extended) for c in p.parts)
        out = b"(" + inner + b" " + r.text(p.subtype.upper())
        if extended:
            out += b" %s %s %s %s" % (
                _params(p.params),
                _disposition(p),
                _language(p),
                r.nstring(p.location),
            )
        return out + b")"
    fields = b"%s %s %s %s %s %s %d" % (
        r.text(p.type.upper()),
        r.text(p.subtype.upper()),
        _params(p.params),
        r.nstring(p.id),
        r.nstring(p.description),
        r.text(p.encoding.upper()),
        p.size,
    )
    if p.message is not None and p.type == "message":
        env, inner_part = p.message
        fields += b" %s %s %d" % (envelope(env), body_structure(inner_part, extended), p.lines or 0)
    elif p.type == "text":
        fields += b" %d" % (p.lines or 0)
    if extended:
        fields += b" %s %s %s %s" % (
            r.nstring(p.md5),
            _disposition(p),
            _language(p),
            r.nstring(p.location),
        )
    return b"(" + fields + b")"


# --- sections -------------------------------------------------------------------------------


def find_part(root: BodyPart, path: tuple[int, ...]) -> BodyPart | None:
    """RFC 3501 §6.4.5 part numbering: multiparts number their children from 1; a
    non-multipart message has part 1 (itself); a message/rfc822 part's numbers continue
    into the encapsulated message."""
    node = root
    for depth, n in enumerate(path):
        if depth > 0 and node.message is not None and node.type == "message":
            node = node.message[1]
        if node.parts:
            if n > len(node.parts):
                return None
            node = node.parts[n - 1]
        elif n != 1:
            return None
    return node


def section_range(root: BodyPart, section: Section, size: int) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` a section covers (HEADER.FIELDS: the header's),
    or None when the section does not exist."""
    if not section.part:
        if section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            return root.header_start, root.body_start
        if section.text == "TEXT":
            return root.body_start, size
        return 0, size
    node = find_part(root, section.part)
    if node is None:
        return None
    if section.text == "MIME":
        return node.header_start, node.body_start
    if section.text == "":
        return node.body_start, node.body_end
    if node.message is None or node.type != "message":
        return None
    msg = node.message[1]
    if section.text == "TEXT":
        return msg.body_start, msg.body_end
    return msg.header_start, msg.body_start


_FIELD = re.compile(rb"(?m)^([^:\s][^:\r\n]*):(?:.*(?:\r?\n[ \t].*)*)(?:\r?\n|$)")


def header_fields(header: bytes, names: tuple[str, ...], negate: bool) -> bytes:
    """RFC 3501 §6.4.5 HEADER.FIELDS[.NOT]: the matching fields, then the blank line."""
    wanted = {n.lower().encode() for n in names}
    out = bytearray()
    for m in _FIELD.finditer(header):
        name = m.group(1).strip().lower()
        if (name in wanted) != negate:
            field = m.group(0)
            out += field if field.endswith(b"\n") else field + b"\r\n"
    out += b"\r\n"
    return bytes(out)
