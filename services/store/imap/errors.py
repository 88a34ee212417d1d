"""The one place where domain errors become IMAP replies (RFC 5530 response codes).

Handlers raise :class:`Refused` for protocol-level refusals and let engine errors
(:class:`MailstoreError` subclasses) propagate; the session turns both into a tagged
``NO [CODE] text`` / ``BAD text`` here. Internal failures never show their text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mailcore.mailstore import errors as engine
from services.store.auth import Refusal


class Refused(Exception):
    """A tagged NO or BAD the handler decided on."""

    def __init__(self, text: str, *, code: str | None = None, status: str = "NO") -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.text = text

    def reply(self) -> tuple[str, str]:
        return self.status, (f"[{self.code}] " if self.code else "") + self.text


def bad(text: str) -> Refused:
    return Refused(text, status="BAD")


# RFC 5530 §3 response codes per engine error.
_ENGINE: list[tuple[type[engine.MailstoreError], str, str]] = [
    (engine.NoSuchMailbox, "NONEXISTENT", "No such mailbox"),
    (engine.MailboxExists, "ALREADYEXISTS", "Mailbox already exists"),
    (engine.InvalidMailboxName, "CANNOT", "Invalid mailbox name"),
    (engine.InvalidFlag, "CANNOT", "Invalid flag"),
    (engine.TooManyKeywords, "LIMIT", "Too many keywords"),
    (engine.SearchStopped, "LIMIT", "Search stopped"),
    (engine.MailboxNotAllowed, "CANNOT", "Not allowed on this mailbox"),
    (engine.QuotaExceeded, "OVERQUOTA", "Quota exceeded"),
    (engine.MessageTooLarge, "TOOBIG", "Message too large"),
    (engine.NoSuchMessage, "EXPUNGEISSUED", "Message no longer exists"),
    (engine.StorageFull, "UNAVAILABLE", "Storage temporarily full, try again later"),
    (engine.StoreClosed, "UNAVAILABLE", "Server shutting down, try again later"),
    # a mirror's read-only follower (docs/mirror.md): no change can ever succeed here
    (
        engine.ReadOnlyReplica,
        "CANNOT",
        "This server is a read-only replica: make changes on the master server",
    ),
]

_AUTH: dict[Refusal, tuple[str, str]] = {
    # RFC 3501 §6.2.3 / RFC 5530 §3
    Refusal.PLAINTEXT: ("PRIVACYREQUIRED", "Use STARTTLS or the IMAPS port before logging in"),
    Refusal.THROTTLED: ("UNAVAILABLE", "Too many failed logins, try again later"),
    Refusal.FAILED: ("AUTHENTICATIONFAILED", "Invalid credentials"),
    Refusal.TOO_MANY_CONNECTIONS: ("LIMIT", "Too many connections for this user"),
}


def engine_reply(exc: engine.MailstoreError) -> tuple[str, str]:
    for cls, code, text in _ENGINE:
        if isinstance(exc, cls):
            shown = (engine.InvalidMailboxName, engine.TooManyKeywords)
            detail = str(exc) if isinstance(exc, shown) else ""
            return "NO", f"[{code}] {text}" + (f": {detail}" if detail else "")
    return "NO", "[SERVERBUG] Internal error"


@contextlib.contextmanager
def destination() -> Iterator[None]:
    """RFC 3501 §6.3.11, §6.4.7: a missing APPEND/COPY/MOVE target is NO [TRYCREATE]."""
    try:
        yield
    except engine.NoSuchMailbox:
        raise Refused("Mailbox does not exist", code="TRYCREATE") from None


def auth_refusal(reason: Refusal) -> Refused:
    code, text = _AUTH[reason]
    return Refused(text, code=code)


INTERNAL = ("NO", "[SERVERBUG] Internal error, the failure has been logged")
