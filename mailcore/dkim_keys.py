"""DKIM signing keys per domain, kept in the ``DIRECTORY`` KV bucket beside the domain
records (key ``dkim.<domain, base64url>``; the directory's readers skip the kind), so every
relay finds them without a file to distribute.

:func:`make_key` creates an RSA-2048 key and the TXT record to publish
(RFC 6376 §3.6.1: ``v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>``) at
``<selector>._domainkey.<domain>``.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from mailcore.directory_records import canonical_domain, record_key

KIND = "dkim"
DEFAULT_SELECTOR = "postern"
KEY_VERSION = 1


@dataclass(slots=True)
class DkimKey:
    domain: str
    selector: str
    private_pem: str
    created: float = field(default_factory=time.time)
    v: int = KEY_VERSION

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def txt(self) -> str:
        """The TXT record's value (RFC 6376 §3.6.1)."""
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def make_key(domain: str, selector: str = DEFAULT_SELECTOR) -> DkimKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return DkimKey(domain=canonical_domain(domain), selector=selector, private_pem=pem)


async def store_key(kv: KeyValue, key: DkimKey) -> None:
    await kv.put(record_key(KIND, key.domain), json.dumps(asdict(key)).encode())


async def load_key(kv: KeyValue, domain: str) -> DkimKey | None:
    try:
        entry = await kv.get(record_key(KIND, canonical_domain(domain)))
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    data = json.loads(entry.value)
    if data.get("v") != KEY_VERSION:
        return None
    return DkimKey(**data)
