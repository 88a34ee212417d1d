"""DKIM signing of outbound mail (RFC 6376) with dkimpy, by the domain of the From
header (RFC 6376 §6.1.1 wants the signing domain aligned with it for DMARC), with the key
``mailctl domain dkim`` stored in the directory. Inbound mail is never signed: only the
relay calls this. Keys are cached for a minute, so a new key takes effect soon.
"""

from __future__ import annotations

import asyncio
import time
from email.parser import BytesHeaderParser
from email.utils import getaddresses

import dkim
from nats.js.kv import KeyValue

from mailcore.dkim_keys import DkimKey, load_key
from mailcore.logging import get_logger

log = get_logger("relay")

CACHE_SECONDS = 60.0
# RFC 6376 §5.4.1: the headers worth signing (those present are signed).
SIGNED_HEADERS = [
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to",
    b"in-reply-to", b"references", b"mime-version", b"content-type",
    b"content-transfer-encoding", b"list-id", b"list-unsubscribe",
]  # fmt: skip


def from_domain(body: bytes) -> str | None:
    head = BytesHeaderParser().parsebytes(body[:65536])
    value = head.get("From")
    if not value:
        return None
    pairs = getaddresses([str(value)])
    if not pairs or "@" not in pairs[0][1]:
        return None
    return pairs[0][1].rpartition("@")[2].lower()


class Signer:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._cache: dict[str, tuple[float, DkimKey | None]] = {}

    async def _key(self, domain: str) -> DkimKey | None:
        now = time.monotonic()
        hit = self._cache.get(domain)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        key = await load_key(self.kv, domain)
        self._cache[domain] = (now, key)
        return key

    async def sign(self, body: bytes) -> bytes:
        """``body`` with a DKIM-Signature on top, or unchanged when its From domain has no
        key (or signing fails: unsigned mail still goes out, and the failure is logged)."""
        domain = from_domain(body)
        if domain is None:
            return body
        try:
            key = await self._key(domain)
        except Exception as exc:
            log.warning("DKIM key not read", domain=domain, error=str(exc))
            return body
        if key is None:
            return body
        try:
            header = await asyncio.to_thread(
                dkim.sign,
                body,
                key.selector.encode(),
                key.domain.encode(),
                key.private_pem.encode(),
                include_headers=SIGNED_HEADERS,
            )
        except Exception as exc:
            log.warning("DKIM signing failed", domain=domain, error=str(exc))
            return body
        return bytes(header) + body
