"""Who may send what (issue 6): no open relay, only known local recipients, and an
authenticated user sends only from their own addresses.

Decisions read the directory's in-memory copy (synchronous dictionary look-ups), so they
work while the store is down (architecture invariant 5). Refusals are domain errors;
the SMTP layer turns them into replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailcore import address as addr
from mailcore.directory import Directory, User
from services.filter import errors
from services.filter.smtp.parser import POSTMASTER, canonical


@dataclass(slots=True)
class Route:
    """Where one RCPT goes: local users (canonical addresses) and remote addresses."""

    local: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)


class Policy:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def check_sender(self, user: User | None, sender: str) -> None:
        """An authenticated user may use their own address, its plus-tags, and every alias
        that reaches them; anyone else may use any sender (SPF/DMARC judge that later)."""
        if user is None:
            return
        address = canonical(sender) if sender else None
        if address is None:
            raise errors.SenderNotOwned(sender)
        candidates = {address, addr.without_tag(address)}
        if user.address in candidates:
            return
        if candidates & self.directory.addresses_of(user):
            return
        raise errors.SenderNotOwned(sender)

    def route(self, recipient: str, *, authenticated: bool) -> Route:
        """Resolve one RCPT TO address or refuse it."""
        if recipient == POSTMASTER:
            return self._postmaster()
        domain = recipient.rpartition("@")[2]
        if self.directory.is_local_domain(domain):
            address = canonical(recipient)
            resolution = self.directory.resolve(address) if address else None
            if not resolution:
                raise errors.UnknownRecipient(recipient)
            return Route(
                local=[u.address for u in resolution.local], remote=list(resolution.remote)
            )
        if not authenticated:
            # RFC 5321 §3.6.2 / RFC 2505: no open relay.
            raise errors.RelayDenied(recipient)
        return Route(remote=[recipient])

    def _postmaster(self) -> Route:
        # RFC 5321 §4.1.1.3: <Postmaster> without a domain; it reaches the postmaster of
        # the first local domain that has one.
        for domain in self.directory.domains():
            resolution = self.directory.resolve(f"{POSTMASTER}@{domain.name}")
            if resolution:
                return Route(
                    local=[u.address for u in resolution.local], remote=list(resolution.remote)
                )
        raise errors.UnknownRecipient(POSTMASTER)
