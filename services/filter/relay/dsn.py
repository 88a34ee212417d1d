"""Delivery status notifications (RFC 3464) for the sender of outbound mail: a
``multipart/report; report-type=delivery-status`` (RFC 6522) with a human-readable part,
the ``message/delivery-status`` part and the original message's headers
(``text/rfc822-headers``, RFC 6522 §3 — not the body, which may be large).

``action=failed`` for bounces (5xx, expiry, an operator's bounce), ``action=delayed``
for the delay warning. A message with a null reverse-path gets no DSN (RFC 5321 §4.5.5).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate, make_msgid

from mailcore.bus.outcome import DeliveryError


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    recipient: str
    error: DeliveryError


def original_headers(body: bytes) -> bytes:
    """The header block of ``body`` (up to the first empty line), CRLF line ends."""
    end = body.find(b"\r\n\r\n")
    if end < 0:
        end = body.find(b"\n\n")
    head = body if end < 0 else body[:end]
    return b"\r\n".join(head.splitlines()) + b"\r\n"


def _status_code(err: DeliveryError) -> str:
    # RFC 3464 §2.3.4: Status is the enhanced code; a bare class when there is none.
    return err.enhanced or ("4.0.0" if err.temporary else "5.0.0")


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    original_id: str,
    received_at: float,
    body: bytes,
    statuses: list[RecipientStatus],
    action: str,
    expires_at: float | None = None,
) -> bytes:
    """The DSN message as bytes (CRLF), From the postmaster of ``reporting_mta``."""
    boundary = "=_postern_" + os.urandom(12).hex()
    now = time.time()
    if action == "failed":
        subject = "Undelivered Mail Returned to Sender"
        intro = (
            "Your message could not be delivered to one or more recipients.\r\n"
            "It has been returned; the reasons follow.\r\n"
        )
    else:
        subject = "Delayed Mail (still being retried)"
        until = format_datetime(datetime.fromtimestamp(expires_at, UTC)) if expires_at else "later"
        intro = (
            "Your message has not been delivered yet to one or more recipients.\r\n"
            f"Delivery will be retried until {until}; you need not send it again.\r\n"
        )
    human = intro + "\r\n" + "".join(f"<{s.recipient}>: {s.error.reply}\r\n" for s in statuses)
    # RFC 3464 §2.2: per-message fields, then a block per recipient (§2.3).
    fields = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Postern-Queue-ID: {original_id}",
        f"Arrival-Date: {formatdate(received_at)}",
    ]
    blocks = ["\r\n".join(fields)]
    for s in statuses:
        lines = [
            f"Final-Recipient: rfc822; {s.recipient}",
            f"Action: {action}",
            f"Status: {_status_code(s.error)}",
        ]
        if s.error.remote:
            lines.append(f"Remote-MTA: dns; {s.error.remote}")
        if s.error.code:
            lines.append(f"Diagnostic-Code: smtp; {s.error.code} {_one_line(s.error.message)}")
        lines.append(f"Last-Attempt-Date: {formatdate(now)}")
        if expires_at is not None and action == "delayed":
            lines.append(f"Will-Retry-Until: {formatdate(expires_at)}")
        blocks.append("\r\n".join(lines))
    status_part = "\r\n\r\n".join(blocks) + "\r\n"
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Date: {formatdate(now)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    parts = [
        "\r\n".join(head).encode() + b"\r\n\r\nThis is a MIME-formatted delivery report.\r\n",
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode()
        + human.encode("utf-8"),
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n".encode()
        + status_part.encode("utf-8"),
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n".encode()
        + original_headers(body),
        f"--{boundary}--\r\n".encode(),
    ]
    return b"\r\n".join(p.rstrip(b"\r\n") for p in parts[:-1]) + b"\r\n" + parts[-1]


def _one_line(text: str) -> str:
    return " ".join(text.split())
