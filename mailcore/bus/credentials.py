"""How a process proves who it is to NATS: user and password (or a password file) and TLS.

Built from the settings every service shares (``POSTERN_NATS_USER``,
``POSTERN_NATS_PASSWORD`` or ``POSTERN_NATS_PASSWORD_FILE``, ``POSTERN_NATS_TLS_CA``,
``_CERT``, ``_KEY``). ``mailctl``'s own commands fall back to what ``mailctl up`` made in the
data directory (the ``mailctl`` user's password, the NATS CA), so they work against a local
cluster with nothing set.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailcore.bus.permissions import ADMIN, inbox_prefix
from mailcore.config import CommonSettings


class CredentialsError(Exception):
    """A credential file named by a setting cannot be read."""


@dataclass(frozen=True, slots=True)
class NatsAuth:
    user: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None

    def options(self) -> dict[str, Any]:
        """nats-py ``connect`` options; replies come to the user's own inbox prefix, the
        only inbox its permissions let it subscribe to (mailcore.bus.permissions)."""
        out: dict[str, Any] = {}
        if self.user:
            out |= {"user": self.user, "password": self.password or ""}
            out["inbox_prefix"] = inbox_prefix(self.user) if self.user != ADMIN else "_INBOX"
        if self.tls is not None:
            out["tls"] = self.tls
        return out


def users_dir(data: Path) -> Path:
    """Where ``mailctl up`` keeps one password file per NATS user (mode 0600)."""
    return data / "nats" / "users"


def tls_dir(data: Path) -> Path:
    """Where ``mailctl up`` keeps the NATS CA and server certificate."""
    return data / "nats" / "tls"


def client_tls(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A TLS 1.2+ client context checking the server against ``ca`` (system CAs when
    unset), with a client certificate when given; None when nothing asks for TLS."""
    if ca is None and cert is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise CredentialsError(f"NATS TLS files: {exc}") from None
    return ctx


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise CredentialsError(f"POSTERN_NATS_PASSWORD_FILE={path}: {exc.strerror}") from None


def from_settings(s: CommonSettings, *, local_admin: bool = False) -> NatsAuth:
    """The credentials ``s`` names. ``local_admin`` (``mailctl`` commands): with no user
    set, use the ``mailctl`` user and the CA that ``mailctl up`` made in the data directory."""
    user, password = s.nats_user, s.nats_password
    if s.nats_password_file is not None:
        password = _read(s.nats_password_file)
    ca = s.nats_tls_ca
    if local_admin and not user:
        admin_file = users_dir(s.data) / ADMIN
        if admin_file.exists():
            user, password = ADMIN, _read(admin_file)
    if local_admin and ca is None and (tls_dir(s.data) / "ca.pem").exists():
        ca = tls_dir(s.data) / "ca.pem"
    return NatsAuth(user, password, client_tls(ca, s.nats_tls_cert, s.nats_tls_key))
