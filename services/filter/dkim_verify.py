"""DKIM verification (RFC 6376) of inbound mail, for Authentication-Results (RFC 8601).

dkimpy checks each ``DKIM-Signature`` in a worker thread; public keys come from DNS TXT
records through dnspython (or a lookup the caller gives, as tests do). Only messages that
carry a signature cost anything: the others are "none" after one search of the header
block. Results follow RFC 8601 §2.7.1: pass, fail, neutral (a malformed signature),
temperror (DNS did not answer), permerror (no usable key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import dkim
import dns.exception
import dns.resolver

from services.filter.headers import header_end

TxtLookup = Callable[[str], str | None]  # TXT record text for a name, None if there is none
MAX_SIGNATURES = 5  # more are not checked (RFC 6376 §6.1: verifiers may limit them)


class DnsTrouble(Exception):
    """The resolver failed (timeout, SERVFAIL): a temporary error, not a missing key."""


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str  # pass / fail / neutral / temperror / permerror
    domain: str = ""
    selector: str = ""
    signature: str = ""  # the first characters of b=, to tell signatures apart (§2.7.1)

    def render(self) -> str:
        parts = [f"dkim={self.result}"]
        if self.domain:
            parts.append(f"header.d={self.domain}")
        if self.selector:
            parts.append(f"header.s={self.selector}")
        if self.signature:
            parts.append(f"header.b={self.signature}")
        return " ".join(parts)


def dns_txt(timeout: float) -> TxtLookup:
    """A TXT lookup through the system's resolver."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout

    def lookup(name: str) -> str | None:
        try:
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:
            raise DnsTrouble(type(exc).__name__) from None
        return "".join(b"".join(r.strings).decode("ascii", "replace") for r in answer)

    return lookup


def _tag(signature_field: bytes, tag: bytes) -> str:
    """One tag's value from a DKIM-Signature field (RFC 6376 §3.2 tag-list)."""
    value = signature_field.partition(b":")[2]
    for item in value.replace(b"\r\n", b"").split(b";"):
        name, eq, text = item.strip().partition(b"=")
        if eq and name.strip() == tag:
            return b"".join(text.split()).decode("ascii", "replace")
    return ""


def _signature_fields(head: bytes) -> list[bytes]:
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            if fields[-1].lower().startswith(b"dkim-signature:"):
                fields[-1] += b"\r\n" + line
            continue
        fields.append(line)
    return [f for f in fields if f.lower().startswith(b"dkim-signature:")]


def has_signature(message: bytes) -> bool:
    return b"dkim-signature:" in message[: header_end(message)].lower()


def verify(message: bytes, lookup: TxtLookup) -> list[DkimResult]:
    """Every signature's result, in header order (blocking: run it in a thread)."""
    fields = _signature_fields(message[: header_end(message)])[:MAX_SIGNATURES]
    if not fields:
        return []
    found: dict[str, bool] = {}

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        text = lookup(name.decode("ascii", "replace").rstrip("."))
        found[name.decode("ascii", "replace")] = text is not None
        return text.encode() if text is not None else None

    checker = dkim.DKIM(message, minkey=1024)
    results = []
    for index, field in enumerate(fields):
        domain, selector = _tag(field, b"d"), _tag(field, b"s")
        signature = _tag(field, b"b")[:8]
        try:
            ok = checker.verify(idx=index, dnsfunc=dnsfunc)
            if ok:
                outcome = "pass"
            elif found and not all(found.values()):
                outcome = "permerror"  # no key published for this selector
            else:
                outcome = "fail"
        except DnsTrouble:
            outcome = "temperror"
        except dkim.DKIMException as exc:
            # A body that does not match its hash failed; a signature that cannot be
            # evaluated at all is "neutral" (RFC 8601 §2.7.1).
            outcome = "fail" if "body hash mismatch" in str(exc) else "neutral"
        found.clear()
        results.append(DkimResult(outcome, domain, selector, signature))
    return results


class DkimVerifier:
    def __init__(self, lookup: TxtLookup, timeout: float) -> None:
        self.lookup = lookup
        self.timeout = timeout

    async def check(self, message: bytes) -> list[DkimResult]:
        if not has_signature(message):
            return []
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.to_thread(verify, message, self.lookup)
        except TimeoutError:
            return [DkimResult("temperror")]
