"""X.509 for NATS (docs/security.md): a CA of its own per purpose and the one certificate
it signs, written once. The CA's private key is never written: nothing can sign another
certificate the CA vouches for, so holding the issued key is the only way in.

* the client-facing server certificate (``server.pem``, signed by ``ca.pem``): services
  check the server they dial against ``ca.pem``;
* the route certificate (``route.pem``, signed by ``cluster-ca.pem``): each node of a
  cluster presents it on the routes it dials and accepts, and verifies the other side's
  against ``cluster-ca.pem``, so only the nodes can join the cluster (RFC 8446 §4.3.2 and
  §4.4.2: the accepting node asks for the dialling node's certificate, which it must
  send; RFC 5280 §4.2.1.12: extended key usage, a route's ends are server and client).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825
SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
ROUTE = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def write_private(path: Path, data: bytes) -> None:
    """``data`` in ``path``, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@dataclass(frozen=True, slots=True)
class Bundle:
    """Where one CA, the certificate it signed and that certificate's key are kept."""

    ca: Path
    cert: Path
    key: Path

    def complete(self) -> bool:
        return self.ca.exists() and self.cert.exists() and self.key.exists()


def _ca(
    common_name: str, start: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        crl_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    bundle: Bundle, ca_name: str, hostnames: list[str], usages: tuple[x509.ObjectIdentifier, ...]
) -> Bundle:
    """Make a CA called ``ca_name`` and a certificate it signs for ``hostnames`` plus
    localhost, 127.0.0.1 and ::1 with the extended key ``usages``; write the key (0600),
    the certificate, then the CA (its presence means "complete"). Nothing is made when
    ``bundle`` is complete already."""
    if bundle.complete():
        return bundle
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key, ca_cert = _ca(ca_name, start)
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
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    write_private(
        bundle.key,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    bundle.cert.write_bytes(cert.public_bytes(pem))
    bundle.ca.write_bytes(ca_cert.public_bytes(pem))
    return bundle
