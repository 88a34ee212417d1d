"""Resent copies: the same message handed to the bus twice under two bus ids.

A sending MTA that got a 451 (or lost the connection) after the filter's hand-off was in
fact stored sends the message again, and the filter gives the retry a new bus id, so
JetStream's duplicate window (by ``Nats-Msg-Id``) cannot catch it. The store can: a bus
message whose Message-ID header, envelope (sender and recipients) and body (what follows
the header block: the filter's own trace fields differ between the two copies) equal those
of one delivered in the last :data:`WINDOW` seconds under another bus id is the sender's
retry, and is dropped (acked, counted) rather than delivered a second time.

Messages without a Message-ID are never taken for duplicates: equal envelopes and bodies
without one (a monitoring probe, say) may well be meant twice.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict

from mailcore.bus.schemas import MailMessage

WINDOW = 600.0  # seconds a delivered message is remembered
MAX_REMEMBERED = 200_000
_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)")


def fingerprint(mail: MailMessage) -> bytes | None:
    """A digest of Message-ID, envelope and body, or None without a Message-ID."""
    body = mail.body
    end = body.find(b"\r\n\r\n")
    head, text = (body, b"") if end < 0 else (body[: end + 2], body[end + 4 :])
    m = _MESSAGE_ID.search(head)
    if m is None:
        return None
    message_id = b"".join(m.group(1).split())
    if not message_id:
        return None
    h = hashlib.blake2b(digest_size=20)
    for part in (message_id, mail.mail_from.encode("utf-8", "replace")):
        h.update(len(part).to_bytes(4, "big") + part)
    for rcpt in sorted(r.lower() for r in mail.recipients):
        h.update(b"\0" + rcpt.encode("utf-8", "replace"))
    h.update(b"\1" + text)
    return h.digest()


class RecentDeliveries:
    """Fingerprints of messages delivered recently, with the bus id they came under."""

    def __init__(self, window: float = WINDOW, limit: int = MAX_REMEMBERED) -> None:
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[bytes, tuple[float, str]] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._seen:
            fp, (when, _) = next(iter(self._seen.items()))
            if now - when < self.window and len(self._seen) <= self.limit:
                break
            del self._seen[fp]

    def resent(self, fp: bytes | None, bus_id: str) -> bool:
        """Whether ``fp`` was delivered recently under another bus id (a redelivery of
        the same bus message is not a resend: delivery keys make it harmless)."""
        if fp is None:
            return False
        self._expire(time.monotonic())
        hit = self._seen.get(fp)
        return hit is not None and hit[1] != bus_id

    def remember(self, fp: bytes | None, bus_id: str) -> None:
        if fp is None:
            return
        self._seen[fp] = (time.monotonic(), bus_id)
        self._seen.move_to_end(fp)
        self._expire(time.monotonic())
