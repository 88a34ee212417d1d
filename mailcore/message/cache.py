"""The compact cached form of a :class:`ParsedMessage` (stored once per message file).

JSON of nested arrays, with a format version first; ``loads`` of an unknown version
raises ValueError and the caller parses the message afresh.
"""

from __future__ import annotations

import json
from typing import Any

from mailcore.message.headers import Address
from mailcore.message.parse import BodyPart, Envelope, ParsedMessage

FORMAT = 1


def _addrs(addrs: list[Address]) -> list[Any]:
    return [[a.name, a.adl, a.mailbox, a.host] for a in addrs]


def _env(e: Envelope) -> list[Any]:
    sender = None if e.sender == e.from_ else _addrs(e.sender)
    reply_to = None if e.reply_to == e.from_ else _addrs(e.reply_to)
    return [
        e.date,
        e.subject,
        _addrs(e.from_),
        sender,
        reply_to,
        _addrs(e.to),
        _addrs(e.cc),
        _addrs(e.bcc),
        e.in_reply_to,
        e.message_id,
    ]


def _part(p: BodyPart) -> list[Any]:
    disposition = [p.disposition[0], p.disposition[1]] if p.disposition else None
    message = [_env(p.message[0]), _part(p.message[1])] if p.message else None
    return [
        p.header_start,
        p.body_start,
        p.body_end,
        p.type,
        p.subtype,
        p.params,
        p.id,
        p.description,
        p.encoding,
        p.size,
        p.lines,
        p.md5,
        disposition,
        p.language,
        p.location,
        [_part(c) for c in p.parts],
        message,
    ]


def dumps(p: ParsedMessage) -> bytes:
    doc = [FORMAT, _env(p.envelope), _part(p.structure), p.header_size, p.decoded]
    doc += [p.sent, p.sent_day]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load_addrs(raw: list[Any]) -> list[Address]:
    return [Address(a[0], a[1], a[2], a[3]) for a in raw]


def _load_env(raw: list[Any]) -> Envelope:
    from_ = _load_addrs(raw[2])
    return Envelope(
        date=raw[0],
        subject=raw[1],
        from_=from_,
        sender=list(from_) if raw[3] is None else _load_addrs(raw[3]),
        reply_to=list(from_) if raw[4] is None else _load_addrs(raw[4]),
        to=_load_addrs(raw[5]),
        cc=_load_addrs(raw[6]),
        bcc=_load_addrs(raw[7]),
        in_reply_to=raw[8],
        message_id=raw[9],
    )


def _pairs(raw: list[Any]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in raw]


def _load_part(raw: list[Any]) -> BodyPart:
    disposition = (raw[12][0], _pairs(raw[12][1])) if raw[12] else None
    message = (_load_env(raw[16][0]), _load_part(raw[16][1])) if raw[16] else None
    return BodyPart(
        header_start=raw[0],
        body_start=raw[1],
        body_end=raw[2],
        type=raw[3],
        subtype=raw[4],
        params=_pairs(raw[5]),
        id=raw[6],
        description=raw[7],
        encoding=raw[8],
        size=raw[9],
        lines=raw[10],
        md5=raw[11],
        disposition=disposition,
        language=raw[13],
        location=raw[14],
        parts=[_load_part(c) for c in raw[15]],
        message=message,
    )


def loads(data: bytes) -> ParsedMessage:
    doc = json.loads(data)
    if not isinstance(doc, list) or not doc or doc[0] != FORMAT:
        raise ValueError("unknown parsed-message cache format")
    return ParsedMessage(
        envelope=_load_env(doc[1]),
        structure=_load_part(doc[2]),
        header_size=doc[3],
        decoded=doc[4],
        sent=doc[5],
        sent_day=doc[6],
    )
