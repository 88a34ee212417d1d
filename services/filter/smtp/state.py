"""What one SMTP session knows: who the client is, where the session stands, and the
mail transaction in progress (RFC 5321 §3.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailcore.directory import User
from services.filter.listeners import ListenerSpec


@dataclass(slots=True)
class Transaction:
    """From MAIL to the end of DATA (or RSET)."""

    mail_from: str
    smtputf8: bool = False
    size_hint: int | None = None
    # Ordered sets of canonical local user addresses and remote addresses.
    local: dict[str, None] = field(default_factory=dict)
    remote: dict[str, None] = field(default_factory=dict)
    accepted_rcpts: int = 0
    first_rcpt: str | None = None

    @property
    def has_recipients(self) -> bool:
        return bool(self.local or self.remote)


@dataclass(slots=True)
class SessionState:
    listener: ListenerSpec
    conn_id: str
    client_ip: str
    client_port: int
    tls: bool
    helo: str | None = None
    esmtp: bool = False
    tls_version: str | None = None
    user: User | None = None
    tx: Transaction | None = None
    errors: int = 0

    def reset_after_tls(self) -> None:
        """RFC 3207 §4.2: after the TLS handshake the client starts over with EHLO."""
        self.helo = None
        self.esmtp = False
        self.tx = None
        self.tls = True
