"""The NATS server's side of per-service credentials and TLS (docs/security.md).

* One password per NATS user (mailcore.bus.permissions: filter, relay, store, webmail,
  mirror, mailctl), made once, kept in a file of its own (mode 0600); the server's
  configuration holds only its bcrypt hash and the user's publish/subscribe allow lists.
* A CA and a server certificate for NATS over TLS (the names the services dial).

``mailctl up`` calls these on its data directory; compose's ``certs`` job runs
``mailctl nats-auth`` to write the same into the volumes the containers mount.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from mailcore.bus.permissions import Permissions, roles

# nats-server checks the hash on every connection (and reconnection storm). The passwords
# are 192 random bits, which no cost factor would make easier or harder to guess: the hash
# only keeps them out of the server's configuration. Cost 11 took 3-5 s per connection on
# a loaded 2-core machine (clients time out and retry); cost 6 takes milliseconds.
BCRYPT_ROUNDS = 6


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def ensure_passwords(users: Path) -> dict[str, str]:
    """Every role's password, read from ``users/<user>`` or made (random, 0600) once."""
    out: dict[str, str] = {}
    for user in roles():
        path = users / user
        if not path.exists():
            _write_private(path, (secrets.token_urlsafe(24) + "\n").encode())
        out[user] = path.read_text().strip()
    return out


def _quoted(text: str) -> str:
    # a JSON string is a NATS configuration string; quoting also keeps "$" literal
    return json.dumps(text)


def _allow(subjects: tuple[str, ...]) -> str:
    return "{allow: [" + ", ".join(_quoted(s) for s in subjects) + "]}"


def _user(name: str, password: str, perms: Permissions) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
    return (
        f"    {{user: {_quoted(name)}, password: {_quoted(hashed)}, permissions: {{\n"
        f"      publish: {_allow(perms.publish)}\n"
        f"      subscribe: {_allow(perms.subscribe)}\n"
        + ("      allow_responses: true\n" if perms.allow_responses else "")
        + "    }}"
    )


def authorization_block(passwords: dict[str, str]) -> str:
    """The server's ``authorization`` section: every user, bcrypt-hashed, with its
    allow lists. A connection without a known user and password is refused."""
    perms = roles()
    users = [_user(name, passwords[name], perms[name]) for name in perms]
    return "authorization {\n  users = [\n" + "\n".join(users) + "\n  ]\n}\n"


@dataclass(frozen=True, slots=True)
class ServerTls:
    ca: Path
    cert: Path
    key: Path

    def block(self) -> str:
        """The server's ``tls`` section: clients must talk TLS (plain is refused)."""
        return (
            "tls {\n"
            f"  cert_file: {_quoted(str(self.cert))}\n"
            f"  key_file: {_quoted(str(self.key))}\n"
            "  timeout: 5\n"
            "}\n"
        )


def ensure_server_tls(directory: Path, hostnames: list[str]) -> ServerTls:
    """A CA (``ca.pem``) and a server certificate it signed for ``hostnames`` plus
    localhost and 127.0.0.1 (``server.pem``, ``server-key.pem``), made once."""
    tls = ServerTls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    if tls.ca.exists() and tls.cert.exists() and tls.key.exists():
        return tls
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=825)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Postern NATS CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in dict.fromkeys(hostnames)]
    names += [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write_private(
        tls.key,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    tls.cert.write_bytes(cert.public_bytes(pem))
    tls.ca.write_bytes(ca_cert.public_bytes(pem))  # last: its presence means "complete"
    return tls


def server_config(passwords: dict[str, str] | None, tls: ServerTls | None) -> str:
    """What a server's configuration adds for credentials and TLS (either may be off)."""
    parts = []
    if passwords is not None:
        parts.append(authorization_block(passwords))
    if tls is not None:
        parts.append(tls.block())
    return "".join(parts)


def write_deployment(conf_dir: Path, secrets_dir: Path, hostnames: list[str]) -> list[str]:
    """Compose's ``certs`` job: the server side in ``conf_dir`` (``auth.conf`` with every
    user's hash and the TLS section, ``users/`` with the passwords, ``tls/``), and for each
    user ``secrets_dir/<user>/password`` and ``ca.pem``: one volume per service, so a
    container holds its own password only. Passwords and certificates are made once and
    kept; the configuration is written again on every run. Returns the users."""
    passwords = ensure_passwords(conf_dir / "users")
    tls = ensure_server_tls(conf_dir / "tls", hostnames)
    _write_private(conf_dir / "auth.conf", server_config(passwords, tls).encode())
    for user, password in passwords.items():
        own = secrets_dir / user
        _write_private(own / "password", (password + "\n").encode())
        (own / "ca.pem").write_bytes(tls.ca.read_bytes())
    return list(passwords)
