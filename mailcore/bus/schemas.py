"""Versioned message schemas for the bus.

A mail message on the bus is one frame: a compact JSON header line (no raw newlines:
JSON escapes them), ``\\n``, then the raw RFC 5322 bytes when the body is inline. A body
above the inline threshold lives in the Object Store and the header names it
(``body_ref``). Every header carries ``v``; a decoder refuses a version it does not know
with :class:`SchemaError`, and the store terminates such a message rather than guess.

Golden payloads for every version live in ``tests/mailcore/bus/golden/``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

MAIL_SCHEMA_VERSION = 1
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class SchemaError(ValueError):
    """A bus payload that this version of Postern cannot read."""


def new_message_id() -> str:
    """A 26-character, time-ordered, unique id (ULID layout: 48-bit ms time, 80 random bits)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


@dataclass(slots=True)
class ClientInfo:
    """Who handed the message to the filter."""

    ip: str = ""
    helo: str = ""
    auth_user: str | None = None
    tls: bool = False
    listener: str = "smtp"


@dataclass(slots=True)
class ScanResult:
    """What the screening decided; ``scanned`` is False when a check was skipped or failed
    open, and the message then also carries a header saying so."""

    spam_score: float | None = None
    spam_tagged: bool = False
    spam_scanned: bool = False
    virus_scanned: bool = False


@dataclass(slots=True)
class MailMessage:
    """One accepted message for a set of recipients (schema v1)."""

    id: str
    mail_from: str
    recipients: list[str]
    size: int
    received_at: float = field(default_factory=time.time)
    client: ClientInfo = field(default_factory=ClientInfo)
    scan: ScanResult = field(default_factory=ScanResult)
    body_ref: str | None = None
    body: bytes = b""
    v: int = MAIL_SCHEMA_VERSION

    def header(self) -> dict[str, Any]:
        # Explicit, not dataclasses.asdict(): that deep-copies, and this runs per message.
        c, sc = self.client, self.scan
        return {
            "id": self.id,
            "mail_from": self.mail_from,
            "recipients": self.recipients,
            "size": self.size,
            "received_at": self.received_at,
            "client": {
                "ip": c.ip,
                "helo": c.helo,
                "auth_user": c.auth_user,
                "tls": c.tls,
                "listener": c.listener,
            },
            "scan": {
                "spam_score": sc.spam_score,
                "spam_tagged": sc.spam_tagged,
                "spam_scanned": sc.spam_scanned,
                "virus_scanned": sc.virus_scanned,
            },
            "body_ref": self.body_ref,
            "v": self.v,
        }


def encode_mail(msg: MailMessage) -> bytes:
    """The frame published to JetStream."""
    head = json.dumps(msg.header(), separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if msg.body_ref is not None and msg.body:
        raise ValueError("a message has an inline body or a body_ref, not both")
    return head + b"\n" + msg.body


def decode_mail(payload: bytes) -> MailMessage:
    """Parse a frame; raise :class:`SchemaError` for anything this version cannot read."""
    head, sep, body = payload.partition(b"\n")
    if not sep:
        raise SchemaError("no header line")
    try:
        data = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(f"header is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SchemaError("header is not an object")
    version = data.get("v")
    if version != MAIL_SCHEMA_VERSION:
        raise SchemaError(f"unknown mail schema version {version!r}")
    try:
        msg = MailMessage(
            id=str(data["id"]),
            mail_from=str(data["mail_from"]),
            recipients=[str(r) for r in data["recipients"]],
            size=int(data["size"]),
            received_at=float(data["received_at"]),
            client=ClientInfo(**data.get("client") or {}),
            scan=ScanResult(**data.get("scan") or {}),
            body_ref=data.get("body_ref"),
            body=body,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"bad v1 header: {exc}") from None
    if not msg.recipients:
        raise SchemaError("no recipients")
    if msg.body_ref is None and len(body) != msg.size:
        raise SchemaError(f"inline body is {len(body)} bytes, header says {msg.size}")
    return msg
