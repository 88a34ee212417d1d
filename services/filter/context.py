"""Everything an SMTP session needs from the filter node, built once per process."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass

from mailcore.config import FilterSettings
from mailcore.directory import Directory
from mailcore.loginguard import LoginGuard
from services.filter.auth_check import StorePasswordCheck
from services.filter.dkim_verify import DkimVerifier
from services.filter.handoff import Handoff
from services.filter.policy import Policy
from services.filter.proxy import TrustedNetworks
from services.filter.screening.verdict import Screening
from services.filter.throttle import AuthThrottle, ConnectionLimiter


@dataclass(slots=True)
class FilterContext:
    settings: FilterSettings
    hostname: str
    directory: Directory
    policy: Policy
    screening: Screening
    handoff: Handoff
    connections: ConnectionLimiter
    auth_throttle: AuthThrottle
    tls: ssl.SSLContext | None
    trusted_proxies: TrustedNetworks
    # SMTP AUTH's password check, answered by the store (services/filter/auth_check.py)
    passwords: StorePasswordCheck
    dkim: DkimVerifier | None = None
    stopping: bool = False
    # The failed-login policy shared with IMAP and POP3 (mailcore.loginguard); without it
    # the in-process per-address AuthThrottle applies.
    login_guard: LoginGuard | None = None

    def plaintext_auth_allowed(self, ip: str) -> bool:
        """``allow_plaintext_auth``: never, on loopback addresses only, or always."""
        mode = self.settings.allow_plaintext_auth
        if mode == "always":
            return True
        if mode == "loopback":
            try:
                return ipaddress.ip_address(ip).is_loopback
            except ValueError:
                return False
        return False
