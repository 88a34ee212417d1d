"""Domain errors of the filter: why a recipient, a message or a session is refused.

The SMTP layer maps each of them to exactly one wire reply (services.filter.smtp.replies);
nothing here knows SMTP syntax. ``reason`` is the label of ``postern_smtp_rejected_total``.
"""

from __future__ import annotations

from typing import ClassVar


class FilterError(Exception):
    """Base of every refusal; ``temporary`` ones are 4xx on the wire."""

    reason: ClassVar[str] = "error"
    temporary: ClassVar[bool] = False


# --- who may send what (policy) --------------------------------------------------------
class RelayDenied(FilterError):
    reason = "relay"


class UnknownRecipient(FilterError):
    reason = "unknown_user"


class SenderNotOwned(FilterError):
    reason = "sender_not_owned"


class TooManyRecipients(FilterError):
    reason = "too_many_recipients"
    temporary = True


class AuthRequired(FilterError):
    reason = "auth_required"


class TlsRequired(FilterError):
    reason = "tls_required"


# --- screening -------------------------------------------------------------------------
class VirusFound(FilterError):
    reason = "virus"

    def __init__(self, signature: str) -> None:
        super().__init__(signature)
        self.signature = signature


class SpamRejected(FilterError):
    reason = "spam"

    def __init__(self, score: float) -> None:
        super().__init__(f"score {score:.1f}")
        self.score = score


class ScannerUnavailable(FilterError):
    """A scanner is down, slow or answered nonsense, and that check does not fail open."""

    reason = "scanner_unavailable"
    temporary = True


# --- hand-off ---------------------------------------------------------------------------
class BusUnavailable(FilterError):
    """JetStream did not acknowledge the message in time (or refused it for a transient
    reason); the client must try again later."""

    reason = "bus_unavailable"
    temporary = True


class StorageFull(FilterError):
    """The inbound stream is near (or at) its byte budget."""

    reason = "storage_full"
    temporary = True
